"""SmoothGrad: average an attribution over noisy copies of the input."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from toolkit_core.attribution import logits_of, resolve_target
from toolkit_core.methods import AttributionMethod, Scale

__all__ = ["SmoothGrad", "smooth"]


def smooth(
    method: AttributionMethod, model: torch.nn.Module, x: Tensor, target=None, samples: int = 25,
    noise: float = 0.15, noise_scale: str = "range", aggregate: str = "mean", seed: int | None = 0,
    internal_batch_size: int | None = None,
) -> Tensor:
    """``SG(x) = 1/n sum_s A(x + eps_s)``, ``eps_s ~ N(0, sigma^2 I)`` (``aggregate="square"``: mean of
    ``A^2`` (SmoothGrad-squared); ``"var"``: variance (VarGrad)).

    ``sigma = noise * (max x_i - min x_i)`` per sample for ``noise_scale="range"`` (the paper's noise
    level), or ``sigma = noise`` for ``"absolute"``. The target is resolved once on the clean input
    (``None``: its predicted class) and kept for every noisy copy. Rows are ordered sample-major
    (copies of sample 0 first) and the noise is drawn in that order from a generator seeded with
    ``seed`` (``None``: the global generator), chunk by chunk of at most ``internal_batch_size`` rows.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if internal_batch_size is not None and internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be a positive integer or None, got {internal_batch_size}")
    x = x.detach()
    b = x.shape[0]
    with torch.no_grad():
        t = resolve_target(target, logits_of(model, x))
    if noise_scale == "range":
        flat = x.flatten(1)
        sigma = noise * (flat.max(1).values - flat.min(1).values)
    elif noise_scale == "absolute":
        sigma = torch.full((b,), float(noise), dtype=x.dtype, device=x.device)
    else:
        raise ValueError(f"noise_scale must be 'range' or 'absolute', got {noise_scale!r}")
    gen = None
    if seed is not None:
        gen = torch.Generator(device=x.device).manual_seed(seed)
    n_rows = b * samples
    chunk = n_rows if internal_batch_size is None else internal_batch_size
    view = (-1,) + (1,) * (x.dim() - 1)
    total = torch.zeros_like(x)
    total_sq = torch.zeros_like(x) if aggregate in ("square", "var") else None
    for start in range(0, n_rows, chunk):
        rows = torch.arange(start, min(start + chunk, n_rows), device=x.device)
        sample = rows // samples
        eps = torch.randn((len(rows), *x.shape[1:]), generator=gen, dtype=x.dtype, device=x.device)
        xn = x[sample] + sigma[sample].view(view) * eps
        a = method.attribute(model, xn, t[sample]).detach()
        if a.shape != xn.shape:
            raise RuntimeError(f"{method.name} returned shape {tuple(a.shape)} for input {tuple(xn.shape)}")
        if aggregate != "square":
            total.index_add_(0, sample, a)
        if total_sq is not None:
            total_sq.index_add_(0, sample, a * a)
    if aggregate == "mean":
        return total / samples
    if aggregate == "square":
        return total_sq / samples
    if aggregate == "var":
        mean = total / samples
        return total_sq / samples - mean * mean
    raise ValueError(f"aggregate must be 'mean', 'square' or 'var', got {aggregate!r}")


class SmoothGrad(AttributionMethod):
    """SmoothGrad: ``1/n sum_s A(x + N(0, sigma^2))`` of a base method ``A`` (Smilkov et al. 2017).

    ``base``: any registered attribution method by name (default the plain ``gradient``; ``"gbp"``
    gives SmoothGrad of guided backprop), created with ``base_params``. ``samples``: noisy copies
    per input. ``noise``: the noise level ``sigma / (x_max - x_min)`` per sample (``noise_scale=
    "range"``, the paper's 10-20%) or ``sigma`` itself (``"absolute"``). ``aggregate``: ``"mean"``
    (SmoothGrad), ``"square"`` (SmoothGrad-squared) or ``"var"`` (VarGrad). ``seed``: the noise is
    reproducible (``None``: drawn from the global generator). ``internal_batch_size``: memory cap,
    the most noisy copies per pass of the base method.
    """

    name = "smoothgrad"
    summary = "SmoothGrad: attribution averaged over Gaussian-noised inputs (wraps any method by name)."
    citation = "arXiv:1706.03825"

    def __init__(self, base: str = "gradient", base_params: dict[str, Any] | None = None, samples: int = 25,
                 noise: float = 0.15, noise_scale: Literal["range", "absolute"] = "range",
                 aggregate: Literal["mean", "square", "var"] = "mean", seed: int | None = 0,
                 internal_batch_size: int | None = None):
        if base == self.name:
            raise ValueError("smoothgrad cannot wrap itself; pick another base method, e.g. 'gradient' or 'gbp'")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be a positive integer or None, got {internal_batch_size}")
        from toolkit_core import create

        self.base, self.base_params = base, base_params
        self.samples, self.noise, self.noise_scale = samples, noise, noise_scale
        self.aggregate, self.seed, self.internal_batch_size = aggregate, seed, internal_batch_size
        self._method = create(base, **(base_params or {}))  # unknown names and bad parameters raise here

    @classmethod
    def contract_params(cls):
        return {"samples": 4}

    @classmethod
    def experiment_variants(cls, scale: Scale):
        """Experiments: the defaults; quick mode 4 noise samples."""
        return [{"samples": 4} if scale.quick else {}]

    def attribute(self, model, x, target):
        return smooth(self._method, model, x, target, self.samples, self.noise, self.noise_scale, self.aggregate,
                      self.seed, self.internal_batch_size)
