"""Mahalanobis detector (Lee et al. 2018, arXiv:1807.03888).

For the features ``f_l(x)`` of layer ``l`` (the input of the last ``nn.Linear`` by default, or the
outputs of named modules; a feature map ``(C, H, W)`` is averaged over ``H, W``), fitted on training
data with labels ``y``:

    mu_c = mean of f_l(x) over class c,   Sigma = 1/N sum_i (f_l(x_i) - mu_{y_i})(f_l(x_i) - mu_{y_i})^T

(one covariance shared by the classes). The distance of an input to the closest class Gaussian,

    d_l(x) = min_c (f_l(x) - mu_c)^T Sigma^+ (f_l(x) - mu_c),

is large for out-of-distribution and adversarial inputs. *Input pre-processing* first moves the input
by ``epsilon`` against the gradient of that distance, ``x' = x - epsilon * sign(grad_x d_l(x))``, which
lowers ``d_l`` more for in-distribution inputs than for abnormal ones, and scores ``d_l(x')``. The
*layer ensemble* combines the layers' distances, ``s(x) = sum_l alpha_l d_l(x')``; the paper fits
``alpha`` by logistic regression on held-out normal and abnormal samples (:meth:`Mahalanobis.fit_ensemble`),
otherwise ``alpha_l = 1 / L``. Higher score = more abnormal (the paper's confidence score is ``-d``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit_core.data import iterate_batches
from toolkit_core.features import device_of, find_head, require_data
from toolkit_core.methods import Detector
from toolkit_core.modelstate import preserved


class Mahalanobis(Detector):
    """Distance to the closest class-conditional Gaussian (tied covariance) of a model's features, with
    input pre-processing and a layer ensemble (Lee et al. 2018, arXiv:1807.03888). Higher = abnormal."""

    name = "mahalanobis"
    summary = "Distance to the closest class Gaussian (tied covariance) of the features; pre-processing, layer ensemble"
    citation = "arXiv:1807.03888"

    def __init__(self, layers: list[str] | None = None, epsilon: float = 0.0, batch_size: int = 256):
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.layers = list(layers) if layers else None
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.means: list[Tensor] = []
        self.precisions: list[Tensor] = []
        self.weights: Tensor | None = None

    # ---------------------------------------------------------------- features

    def _modules(self, model: nn.Module) -> list[tuple[nn.Module, bool]]:
        """(module, use_input) per layer: the last Linear's input by default, else named modules' outputs."""
        if self.layers is None:
            return [(find_head(model)[1], True)]
        out = []
        for name in self.layers:
            try:
                out.append((model.get_submodule(name), False))
            except AttributeError:
                names = ", ".join(n for n, _ in model.named_modules() if n)
                raise ValueError(
                    f"mahalanobis: layer {name!r} is not a submodule of the model; choose from {names}") from None
        return out

    def _features(self, model: nn.Module, x: Tensor) -> list[Tensor]:
        """One ``(B, D)`` float64 feature matrix per layer (feature maps averaged over space)."""
        store: list[Tensor] = []
        handles = []
        for module, use_input in self._modules(model):
            if use_input:
                handles.append(module.register_forward_pre_hook(lambda m, a: store.append(a[0])))
            else:
                handles.append(module.register_forward_hook(lambda m, a, o: store.append(o)))
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        return [(f.flatten(2).mean(2) if f.ndim > 2 else f).double() for f in store]

    # ---------------------------------------------------------------- fit

    def fit(self, model, data) -> Mahalanobis:
        """Class means and the tied covariance of every layer's features over ``data`` (streamed)."""
        device = device_of(model)
        sums: list[Tensor] = []
        second: list[Tensor] = []
        counts = None
        with preserved(model, mode=False), torch.no_grad():
            batches = 0
            for x, y in iterate_batches(data, self.batch_size):
                batches += 1
                y = y.to(device)
                feats = self._features(model, x.to(device).clone())
                k = int(model(x[:1].to(device)).shape[1]) if counts is None else len(counts)
                onehot = torch.nn.functional.one_hot(y, k).double()
                counts = onehot.sum(0) if counts is None else counts + onehot.sum(0)
                for i, f in enumerate(feats):
                    if len(sums) <= i:
                        sums.append(torch.zeros(k, f.shape[1], dtype=torch.float64, device=device))
                        second.append(torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=device))
                    sums[i] += onehot.T @ f
                    second[i] += f.T @ f
        require_data(batches, self.name)
        n = counts.sum()
        present = counts > 0
        self.means, self.precisions = [], []
        for s, ss in zip(sums, second):
            mu = s[present] / counts[present, None]
            # sum_i (f_i - mu_yi)(f_i - mu_yi)^T = sum_i f_i f_i^T - sum_c n_c mu_c mu_c^T
            cov = (ss - (mu * counts[present, None]).T @ mu) / n
            self.means.append(mu)
            self.precisions.append(torch.linalg.pinv(cov, hermitian=True))
        self.classes = torch.nonzero(present)[:, 0]
        return self

    def _require_fit(self) -> None:
        if not self.means:
            raise RuntimeError("mahalanobis: call fit(model, training_data) before score()")

    @staticmethod
    def _distance(f: Tensor, mu: Tensor, precision: Tensor) -> Tensor:
        """``min_c (f - mu_c)^T P (f - mu_c)`` per row of ``f``."""
        d = f[:, None, :] - mu[None]  # (B, C, D)
        return torch.einsum("bcd,de,bce->bc", d, precision, d).amin(1)

    # ---------------------------------------------------------------- score

    def layer_scores(self, model, x: Tensor) -> Tensor:
        """``(B, L)`` distances ``d_l(x')`` per layer, after pre-processing with ``epsilon``."""
        self._require_fit()
        device = device_of(model)
        out = []
        with preserved(model, mode=False, freeze=True):
            for start in range(0, len(x), self.batch_size):
                xb = x[start : start + self.batch_size].detach().to(device).clone()
                cols = []
                for layer, (mu, precision) in enumerate(zip(self.means, self.precisions)):
                    xin = xb
                    if self.epsilon > 0:
                        xg = xb.clone().requires_grad_(True)
                        with torch.enable_grad():
                            dist = self._distance(self._features(model, xg)[layer], mu, precision)
                            (grad,) = torch.autograd.grad(dist.sum(), xg)
                        xin = (xb - self.epsilon * grad.sign()).detach()
                    with torch.no_grad():
                        cols.append(self._distance(self._features(model, xin)[layer], mu, precision))
                out.append(torch.stack(cols, 1))
        return torch.cat(out).cpu()

    def score(self, model, x: Tensor) -> Tensor:
        """``s(x) = sum_l alpha_l d_l(x')``; higher = more abnormal. ``(B,)`` float64 on the CPU."""
        scores = self.layer_scores(model, x)
        w = self.weights if self.weights is not None else torch.full((scores.shape[1],), 1 / scores.shape[1],
                                                                      dtype=torch.float64)
        return scores @ w

    def fit_ensemble(self, model, normal: Tensor, abnormal: Tensor) -> Mahalanobis:
        """Fit the layer weights ``alpha`` by logistic regression on held-out normal vs abnormal inputs."""
        from sklearn.linear_model import LogisticRegression

        s0, s1 = self.layer_scores(model, normal), self.layer_scores(model, abnormal)
        feats = torch.cat([s0, s1]).numpy()
        labels = [0] * len(s0) + [1] * len(s1)
        clf = LogisticRegression(max_iter=1000).fit(feats, labels)
        self.weights = torch.as_tensor(clf.coef_[0], dtype=torch.float64)
        return self
