"""Dual Randomized Smoothing, our operational reading of the abstract of arXiv:2404.09586."""

from __future__ import annotations

import math

import torch
from scipy.stats import norm
from torchtrust_randomized_smoothing import MonteCarloCertifier, clopper_pearson_lower, noise_counts


def _parity(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2], x.shape[-1]
    i = torch.arange(h, device=x.device)[:, None]
    j = torch.arange(w, device=x.device)[None, :]
    return (i + j) % 2  # 0: first sub-image, 1: second


def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Checkerboard down-sampling: ``(B, C, H, W)`` -> two ``(B, C, H, W/2)`` sub-images.

    In every 2x2 block the first sub-image takes pixels (0,0) and (1,1), the second (0,1) and (1,0);
    row ``i`` of each sub-image holds that row's pixels of its colour, left to right. ``W`` must be even.
    """
    if x.shape[-1] % 2:
        raise ValueError(f"drs: the image width must be even to split it into two sub-images, got {x.shape[-1]}")
    mask = _parity(x).bool().expand_as(x)
    shape = x.shape[:-1] + (x.shape[-1] // 2,)
    return x[~mask].reshape(shape), x[mask].reshape(shape)


def merge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split`."""
    shape = a.shape[:-1] + (2 * a.shape[-1],)
    out = torch.empty(shape, dtype=a.dtype, device=a.device)
    mask = _parity(out).bool().expand(shape)
    out[~mask] = a.reshape(-1)
    out[mask] = b.reshape(-1)
    return out


def upsample(sub: torch.Tensor) -> torch.Tensor:
    """Back to ``(B, C, H, W)``: every pixel of a sub-image also fills its missing horizontal neighbour."""
    return sub.repeat_interleave(2, dim=-1)


def drs_radius(p1: torch.Tensor, p2: torch.Tensor, sigma: float) -> torch.Tensor:
    """``R = sigma (Phi^-1(p1) + Phi^-1(p2)) / sqrt(2)`` (0 when not positive: abstain).

    If the two smoothed probabilities of class ``c`` are at least ``p1, p2``, a perturbation
    ``delta = (delta1, delta2)`` leaves them at least ``Phi(Phi^-1(p_k) - ||delta_k|| / sigma)``
    (Cohen et al., per sub-image). Their mean stays above 1/2, so ``c`` stays the top class, while
    ``||delta1|| + ||delta2|| < sigma (Phi^-1(p1) + Phi^-1(p2))``; under ``||delta||_2 = R`` the sum
    ``||delta1|| + ||delta2||`` is at most ``sqrt(2) R``.
    """
    u = torch.from_numpy(norm.ppf(p1.double().numpy()) + norm.ppf(p2.double().numpy()))
    return (sigma * u / math.sqrt(2)).nan_to_num(0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)


class DualRandomizedSmoothing(MonteCarloCertifier):
    """Dual Randomized Smoothing (our reading of Xia et al., ICLR 2024; the full text was not used).

    The input is split into two complementary sub-images ``x1, x2`` (:func:`split`, a checkerboard:
    ``m = n = d/2``). Sub-image ``k`` is smoothed in its own dimension: the base classifier sees
    ``upsample(x_k + N(0, sigma^2 I_m))`` (every noisy pixel also fills its missing neighbour), so the
    noise lives in ``d/2`` dimensions. The DRS classifier averages the two smoothed votes,
    ``G(x) = argmax_c (P1(c) + P2(c)) / 2``.

    ``certify``: ``n0`` draws per sub-image select ``c`` (largest summed count); ``n`` fresh draws per
    sub-image give Clopper-Pearson lower bounds ``p1, p2`` of the two probabilities of ``c``, each at
    level ``alpha / 2`` (Bonferroni: both hold with probability ``>= 1 - alpha``); the radius is
    :func:`drs_radius`. With ``p1 = p2 = p`` it is ``sqrt(2)`` times plain smoothing's
    ``sigma Phi^-1(p)``: the gain the abstract attributes to smoothing in lower dimension.
    ``predict``: ``G`` on ``n`` draws per sub-image, abstaining unless the averaged top probability's
    Clopper-Pearson bound exceeds 1/2.
    ``model`` is the base classifier, applied to full-size (up-sampled) images; the paper trains one
    classifier per sub-image, which is what the two calls of ``model`` on different sub-images stand
    for here.
    """

    name = "drs"
    summary = "Dual randomized smoothing (our reading): two checkerboard sub-images smoothed in d/2 dimensions."
    citation = "arXiv:2404.09586"
    norm = "l2"

    def _sub_counts(self, model, x, num, g):
        x1, x2 = split(x)
        c1 = noise_counts(lambda v: model(upsample(v)), x1, num, self.sigma, self.batch_size, g)
        c2 = noise_counts(lambda v: model(upsample(v)), x2, num, self.sigma, self.batch_size, g, c1.shape[1])
        return c1, c2

    @torch.no_grad()
    def certify(self, model, x):
        with self.guard(model):
            g = self._generator(x.device)
            s1, s2 = self._sub_counts(model, x, self.n0, g)
            c = (s1 + s2).argmax(1)
            e1, e2 = self._sub_counts(model, x, self.n, g)
        p1 = clopper_pearson_lower(e1.gather(1, c[:, None])[:, 0], self.n, self.alpha / 2)
        p2 = clopper_pearson_lower(e2.gather(1, c[:, None])[:, 0], self.n, self.alpha / 2)
        r = drs_radius(p1, p2, self.sigma)
        pred = torch.where((r > 0).to(x.device), c, torch.full_like(c, -1))
        return pred, r.to(x.device, torch.float32)

    @torch.no_grad()
    def predict(self, model, x):
        with self.guard(model):
            e1, e2 = self._sub_counts(model, x, self.n, self._generator(x.device))
        total = e1 + e2
        c = total.argmax(1)
        p = clopper_pearson_lower(total.gather(1, c[:, None])[:, 0], 2 * self.n, self.alpha)
        return torch.where((p > 0.5).to(x.device), c, torch.full_like(c, -1))
