"""Randomized smoothing: certified L2 robustness by Gaussian noise (Cohen et al. 2019, arXiv:1902.02918)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from scipy.stats import beta, binomtest, norm

from toolkit_core import params
from toolkit_core.methods import Certifier, Scale


def clopper_pearson_lower(k: torch.Tensor, n: int, alpha: float) -> torch.Tensor:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower bound of a binomial proportion: ``Beta(alpha; k, n-k+1)``."""
    kk = k.detach().cpu().double().numpy()
    out = torch.zeros(len(kk), dtype=torch.float64)
    pos = kk > 0
    if pos.any():
        out[torch.from_numpy(pos)] = torch.from_numpy(beta.ppf(alpha, kk[pos], n - kk[pos] + 1)).double()
    return out


def noise_counts(
    classify: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, num: int, sigma: float,
    batch_size: int, generator: torch.Generator | None, n_classes: int | None = None,
) -> torch.Tensor:
    """``(B, C)`` counts of ``argmax classify(x_i + sigma * eps)`` over ``num`` Gaussian draws per point.

    ``classify`` maps a batch to logits. Draws are made ``batch_size`` noisy inputs at a time (points
    are spread over the chunks), so memory is bounded whatever ``num`` is.
    """
    b = x.shape[0]
    counts = None
    per_chunk = max(1, batch_size // b)  # draws of every point per chunk
    done = 0
    while done < num:
        k = min(per_chunk, num - done)
        rep = x.repeat_interleave(k, 0)
        noise = torch.randn(rep.shape, generator=generator, device=x.device, dtype=x.dtype)
        logits = classify(rep + sigma * noise)
        if counts is None:
            counts = torch.zeros(b, n_classes or logits.shape[1], dtype=torch.long, device=x.device)
        pred = logits.argmax(1).view(b, k)
        counts.scatter_add_(1, pred, torch.ones_like(pred))
        done += k
    return counts


class MonteCarloCertifier(Certifier):
    """Settings shared by Monte Carlo smoothing certifiers: noise level ``sigma``, ``n0`` selection and
    ``n`` estimation draws, failure probability ``alpha``, ``batch_size`` noisy copies per forward, and
    a ``seed`` for the noise (``None``: unseeded). Subclasses implement ``certify`` and ``predict``."""

    def __init__(self, sigma: float = 0.25, n0: int = 100, n: int = 100000, alpha: float = 0.001,
                 batch_size: int = 1000, seed: int | None = 0):
        params.number(self.name, "sigma", sigma, strict=True, meaning="the noise level")
        for key, v in (("n0", n0), ("n", n), ("batch_size", batch_size)):
            params.count(self.name, key, v)
        if not 0 < alpha < 1:
            raise ValueError(f"{self.name}: alpha (the failure probability) must lie in (0, 1), got {alpha!r}")
        params.seed(self.name, seed)
        self.sigma = float(sigma)
        self.n0, self.n = n0, n
        self.alpha = float(alpha)
        self.batch_size = batch_size
        self.seed = seed

    @classmethod
    def contract_params(cls) -> dict:
        return {"n0": 10, "n": 50, "batch_size": 200}

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict]:
        """Experiments: 50 + 1000 draws (quick: 20 + 100), seeded; the papers' 100000 are too slow on a CPU."""
        return [{"sigma": 0.25, "n0": 20 if scale.quick else 50, "n": 100 if scale.quick else 1000,
                 "alpha": 0.001, "seed": 0}]

    def _generator(self, device) -> torch.Generator | None:
        return None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)


class RandomizedSmoothing(MonteCarloCertifier):
    """Gaussian randomized smoothing of the base classifier ``f`` = ``model`` (Cohen et al. 2019).

    ``g(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0, sigma^2 I)``. If ``P(f(x+eps) = cA) >= pA >= 1/2``
    then ``g(x + delta) = cA`` for every ``||delta||_2 < R = sigma * Phi^-1(pA)`` (Theorem 1).

    * ``certify`` (CERTIFY of the paper): ``n0`` draws select ``cA`` (the most frequent class); ``n``
      fresh draws count ``nA`` hits of ``cA``; ``pA`` is the one-sided ``(1 - alpha)`` Clopper-Pearson
      lower bound of ``nA / n``. If ``pA < 1/2`` the certifier abstains (``-1``, radius 0), else it
      returns ``cA`` and ``R = sigma * Phi^-1(pA)``. The certificate holds with probability at least
      ``1 - alpha`` over the draws.
    * ``predict`` (PREDICT): ``n`` draws; the top two classes with counts ``nA, nB``; returns the top
      class if the two-sided binomial test of ``nA`` out of ``nA + nB`` at ``1/2`` has p-value
      ``<= alpha``, else abstains. It returns a wrong answer with probability at most ``alpha``.

    Defaults are the paper's: ``n0 = 100``, ``n = 100000``, ``alpha = 0.001``; ``sigma = 0.25``.
    The inputs given to ``model`` leave [0, 1] (the noise is not clipped), as in the paper.
    """

    name = "randomized_smoothing"
    summary = "Randomized smoothing (Cohen et al.): Gaussian-noise smoothed classifier with certified L2 radius."
    citation = "arXiv:1902.02918"
    norm = "l2"

    @staticmethod
    def radius(p_lower: torch.Tensor, sigma: float) -> torch.Tensor:
        """``sigma * Phi^-1(p)`` (0 where ``p < 1/2``: abstain)."""
        r = torch.from_numpy(norm.ppf(p_lower.double().numpy())) * sigma
        return torch.where(p_lower >= 0.5, r, torch.zeros_like(r)).clamp_min(0.0)

    def _counts(self, model, x, num, g):
        return noise_counts(model, x, num, self.sigma, self.batch_size, g)

    @torch.no_grad()
    def certify(self, model, x):
        with self.guard(model):
            g = self._generator(x.device)
            c_a = self._counts(model, x, self.n0, g).argmax(1)
            n_a = self._counts(model, x, self.n, g).gather(1, c_a[:, None])[:, 0]
        p_a = clopper_pearson_lower(n_a, self.n, self.alpha)
        abstain = (p_a < 0.5).to(x.device)
        pred = torch.where(abstain, torch.full_like(c_a, -1), c_a)
        return pred, self.radius(p_a, self.sigma).to(x.device, torch.float32)

    @torch.no_grad()
    def predict(self, model, x):
        with self.guard(model):
            counts = self._counts(model, x, self.n, self._generator(x.device))
        top2 = counts.topk(2, dim=1)
        n_a, n_b = top2.values[:, 0].tolist(), top2.values[:, 1].tolist()
        keep = [binomtest(a, a + b, 0.5).pvalue <= self.alpha if a + b > 0 else False for a, b in zip(n_a, n_b)]
        keep_t = torch.tensor(keep, device=x.device, dtype=torch.bool)
        return torch.where(keep_t, top2.indices[:, 0], torch.full_like(top2.indices[:, 0], -1))
