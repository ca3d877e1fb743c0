"""Penultimate features and per-class feature statistics, shared by the generalization metrics.

* :func:`find_head` / :func:`feature_batches` / :func:`collect_features` -- the penultimate features
  ``T`` of a model: by default the *input of the last* ``nn.Linear`` (captured with a forward pre-hook),
  or the *output* of a module the caller names (``feature_layer="fc"``). Streaming, in eval mode, without
  gradients, and the model comes back unchanged (:func:`toolkit_core.modelstate.preserved`).
* :func:`class_scatter` -- the fused per-class scatter ``(n_c, sum_c T, sum_c T T^T)`` declared once
  through :mod:`toolkit_core.kernels` (PyTorch reference on CPU; Triton kernel for CUDA tensors).
* :class:`ClassStatistics` -- accumulates :func:`class_scatter` over batches and derives class means,
  the global mean, within-class and between-class covariances (used by neural collapse and maxent).
* :class:`Directions` -- the ``higher_is_better`` map of a metric with breakdown keys ``"key/part"``.
* :func:`device_of`, :func:`require_data` -- small helpers for metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from . import kernels
from .data import iterate_batches
from .modelstate import model_device, preserved

__all__ = [
    "ClassStatistics",
    "Directions",
    "class_scatter",
    "collect_features",
    "device_of",
    "feature_batches",
    "find_head",
]


# --------------------------------------------------------------------------- small helpers


class Directions(dict):
    """``higher_is_better`` for a metric whose breakdown keys look like ``"key/part"``.

    ``"nc1/class_3" in d`` and ``d["nc1/class_3"]`` resolve to the direction of ``"nc1"``: a breakdown
    (per class, per transform, per layer) is better in the same direction as its aggregate.
    """

    def _base(self, key: object) -> object:
        if isinstance(key, str) and not dict.__contains__(self, key) and "/" in key:
            return key.split("/", 1)[0]
        return key

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._base(key))

    def __getitem__(self, key):
        return dict.__getitem__(self, self._base(key))

    def get(self, key, default=None):
        return dict.get(self, self._base(key), default)


device_of = model_device  # the one model_device of toolkit_core.modelstate, under the name metrics use


def require_data(batches: int, name: str) -> None:
    if batches == 0:
        raise ValueError(
            f"{name}: the data is empty (no batches); pass a non-empty DataLoader, Dataset or (x, y) tuple"
        )


# --------------------------------------------------------------------------- penultimate features


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` of ``model`` in registration order, with its qualified name.

    Raises ``ValueError`` for a model without one: name the feature layer instead.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (name, m)
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so its penultimate features cannot be found "
            "automatically; pass feature_layer='<module name>' (the features are that module's output), "
            f"one of: {', '.join(n for n, _ in model.named_modules() if n) or '(no submodules)'}"
        )
    return last


def _feature_module(model: nn.Module, feature_layer: str | None) -> tuple[nn.Module, bool]:
    """(module to hook, use_input): the last Linear's input, or the named module's output."""
    if feature_layer is None:
        return find_head(model)[1], True
    try:
        return model.get_submodule(feature_layer), False
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(
            f"feature_layer={feature_layer!r} is not a submodule of {type(model).__name__}; "
            f"choose one of: {', '.join(names) or '(no submodules)'}"
        ) from None


def feature_batches(
    model: nn.Module, data, feature_layer: str | None = None, name: str = "features"
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield ``(T, logits, y)`` per batch: features flattened to ``(B, D)``, on the model's device.

    ``T`` is the input of the last ``nn.Linear`` (default) or the output of ``feature_layer``. Runs in
    eval mode under ``torch.no_grad``; the model is restored afterwards (hooks removed, mode and flags
    as before), also if the consumer stops early or an error is raised. Raises ``ValueError`` on empty
    data.
    """
    module, use_input = _feature_module(model, feature_layer)
    device = device_of(model)
    store: list[Tensor] = []

    def pre_hook(mod, args):
        store.append(args[0])

    def post_hook(mod, args, out):
        store.append(out)

    n = 0
    with preserved(model, mode=False), torch.no_grad():
        if use_input:
            module.register_forward_pre_hook(pre_hook)
        else:
            module.register_forward_hook(post_hook)
        for x, y in iterate_batches(data):
            store.clear()
            x, y = x.to(device), y.to(device)
            logits = model(x)
            if not store:
                raise RuntimeError(f"{name}: the feature layer was not called in the forward pass")
            # the first call is the one on the main path (a module reused later would append again)
            t = store[0].detach().flatten(1).clone()
            n += 1
            yield t, logits.detach(), y
    require_data(n, name)


def collect_features(
    model: nn.Module, data, feature_layer: str | None = None, name: str = "features"
) -> tuple[Tensor, Tensor, Tensor]:
    """All of :func:`feature_batches` concatenated: ``(T (N, D), logits (N, C), y (N,))``."""
    ts, ls, ys = [], [], []
    for t, logits, y in feature_batches(model, data, feature_layer, name):
        ts.append(t)
        ls.append(logits)
        ys.append(y)
    return torch.cat(ts), torch.cat(ls), torch.cat(ys)


# --------------------------------------------------------------------------- fused per-class scatter


def _class_scatter(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Reference: ``counts[c] = #{i: y_i = c}``, ``sums[c] = sum_{y_i=c} T_i``,
    ``outer[c] = sum_{y_i=c} T_i T_i^T`` (index_add for counts and sums, one matmul per class)."""
    n, d = features.shape
    counts = torch.zeros(num_classes, dtype=features.dtype, device=features.device)
    counts.index_add_(0, labels, torch.ones(n, dtype=features.dtype, device=features.device))
    sums = torch.zeros(num_classes, d, dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    outer = torch.zeros(num_classes, d, d, dtype=features.dtype, device=features.device)
    order = torch.argsort(labels, stable=True)
    xs, ls = features[order], labels[order]
    present, per = torch.unique_consecutive(ls, return_counts=True)
    for c, seg in zip(present.tolist(), torch.split(xs, per.tolist())):
        outer[c] = seg.T @ seg
    return counts, sums, outer


def _class_scatter_fake(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    d = features.shape[1]
    return (
        features.new_empty(num_classes),
        features.new_empty(num_classes, d),
        features.new_empty(num_classes, d, d),
    )


def _examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor, Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for n, d, c in [(50, 7, 4), (200, 40, 10), (33, 70, 3)]:
        x = torch.randn(n, d, generator=g).to(dtype=dtype, device=device)
        y = torch.randint(0, c, (n,), generator=g)
        y[0] = c - 1  # every example has the last class; some classes may be empty in small draws
        out.append((x, y.to(device), c))
    return out


class_scatter = kernels.declare(
    "torchtrust_features::class_scatter",
    reference=_class_scatter,
    triton="toolkit_core.features_triton:class_scatter",
    fake=_class_scatter_fake,
    examples=_examples,
)
"""``class_scatter(T (N, D), y (N,) int64, C) -> (counts (C,), sums (C, D), outer (C, D, D))``."""


class ClassStatistics:
    """Streaming class statistics of features: accumulate :func:`class_scatter` over batches.

    With ``n_c`` samples of class ``c``, ``mu_c = S_c / n_c``, ``mu_G = sum_c S_c / N``;
    ``Sigma_c = O_c / n_c - mu_c mu_c^T`` (class covariance, biased);
    ``Sigma_W = sum_c (n_c / N) Sigma_c`` (within-class); ``Sigma_B = 1/C' sum_c (mu_c - mu_G)(mu_c - mu_G)^T``
    over the ``C'`` classes present (between-class, as in Papyan et al. 2020); ``Sigma_T`` the total covariance.
    Accumulation is in float64 for numerical stability of the covariances.
    """

    def __init__(self, num_classes: int, dim: int):
        self.num_classes, self.dim = num_classes, dim
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.outer = torch.zeros(num_classes, dim, dim, dtype=torch.float64)

    def update(self, features: Tensor, labels: Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must have shape (N, {self.dim}), got {tuple(features.shape)}")
        labels = labels.to(device=features.device, dtype=torch.long)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in 0..{self.num_classes - 1}, got range "
                f"{int(labels.min())}..{int(labels.max())}; pass num_classes to the metric"
            )
        dtype = torch.float64 if features.device.type == "cpu" else features.dtype
        c, s, o = class_scatter(features.to(dtype).contiguous(), labels.contiguous(), self.num_classes)
        self.counts += c.double().cpu()
        self.sums += s.double().cpu()
        self.outer += o.double().cpu()

    @property
    def present(self) -> Tensor:
        """Indices of the classes with at least one sample."""
        return torch.nonzero(self.counts > 0).flatten()

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def means(self) -> Tensor:
        """Class means ``(C', D)`` of the present classes."""
        p = self.present
        return self.sums[p] / self.counts[p, None]

    def global_mean(self) -> Tensor:
        return self.sums.sum(0) / self.counts.sum()

    def class_covariances(self) -> Tensor:
        """``(C', D, D)``: biased covariance of each present class."""
        p = self.present
        mu = self.means()
        return self.outer[p] / self.counts[p, None, None] - mu[:, :, None] * mu[:, None, :]

    def within(self) -> Tensor:
        p = self.present
        w = self.counts[p] / self.counts.sum()
        return (w[:, None, None] * self.class_covariances()).sum(0)

    def between(self) -> Tensor:
        m = self.means() - self.global_mean()
        return m.T @ m / len(m)

    def total_covariance(self) -> Tensor:
        n = self.counts.sum()
        mu = self.global_mean()
        return self.outer.sum(0) / n - mu[:, None] * mu[None, :]


def class_statistics(
    model: nn.Module, data, num_classes: int | None = None, feature_layer: str | None = None,
    name: str = "features",
) -> ClassStatistics:
    """One streaming pass: the :class:`ClassStatistics` of the model's penultimate features.

    ``num_classes`` defaults to the output width of the model's logits.
    """
    stats = None
    for t, logits, y in feature_batches(model, data, feature_layer, name):
        if stats is None:
            stats = ClassStatistics(num_classes or logits.shape[1], t.shape[1])
        stats.update(t, y)
    assert stats is not None  # feature_batches raises on empty data
    return stats
