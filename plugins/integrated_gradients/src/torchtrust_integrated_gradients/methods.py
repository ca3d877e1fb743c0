"""Integrated Gradients, batched over the integration path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from toolkit_core.attribution import logits_of, resolve_target
from toolkit_core.methods import AttributionMethod, Scale

__all__ = ["IGResult", "IntegratedGradients", "integrated_gradients", "quadrature"]

Rule = Literal["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def quadrature(steps: int, rule: str) -> tuple[list[float], list[float]]:
    """Nodes ``alpha_i`` in [0, 1] and weights ``w_i`` (summing to 1) of a rule with ``steps`` points.

    Riemann: left ``alpha_i = i/n``, right ``(i+1)/n``, middle ``(i+1/2)/n``, all with ``w = 1/n``;
    trapezoid: ``alpha_i = i/(n-1)``, half weights at both ends. Gauss-Legendre: the Legendre nodes
    ``t_i`` and weights ``u_i`` on [-1, 1] mapped to ``alpha = (1 + t)/2``, ``w = u/2`` (exact for
    polynomials of degree ``2n - 1``). The same conventions as Captum.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    n = steps
    if rule == "gausslegendre":
        t, u = np.polynomial.legendre.leggauss(n)
        return list(0.5 * (1 + t)), list(0.5 * u)
    if rule == "riemann_trapezoid":
        if n < 2:
            raise ValueError("the trapezoid rule needs steps >= 2")
        w = [1 / (n - 1)] * n
        w[0] = w[-1] = 1 / (2 * (n - 1))
        return list(np.linspace(0, 1, n)), w
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if rule not in offsets:
        raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}")
    return [(i + offsets[rule]) / n for i in range(n)], [1 / n] * n


@dataclass
class IGResult:
    attribution: Tensor  # (B, ...) like x
    delta: Tensor  # (B,) completeness error: sum(attribution) - (f_t(x) - f_t(baseline))
    target: Tensor  # (B,) the classes explained


def integrated_gradients(
    model: torch.nn.Module, x: Tensor, target=None, baseline: float | Tensor = 0.0, steps: int = 32,
    rule: str = "gausslegendre", internal_batch_size: int | None = None,
) -> IGResult:
    """``IG_i(x) = (x_i - x'_i) * sum_s w_s * d f_t(x' + alpha_s (x - x')) / d x_i``.

    ``baseline``: a number or a tensor broadcastable to ``x``. ``internal_batch_size``: at most this
    many path points (rows) per forward/backward pass (``None``: all ``steps * B`` at once).
    Returns the map, the completeness error ``sum_i IG_i - (f_t(x) - f_t(x'))`` per sample (it goes
    to 0 as ``steps`` grows for a model differentiable almost everywhere), and the target.
    """
    x = x.detach()
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        base = torch.broadcast_to(base, x.shape)
    except RuntimeError as e:
        raise ValueError(f"baseline of shape {tuple(base.shape)} does not broadcast to x of shape "
                         f"{tuple(x.shape)}") from e
    if internal_batch_size is not None and internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be a positive integer or None, got {internal_batch_size}")
    alphas, weights = quadrature(steps, rule)
    b = x.shape[0]
    with torch.no_grad():
        ends = logits_of(model, torch.cat([x, base]))
    t = resolve_target(target, ends[:b])
    f_x = ends[:b].gather(1, t[:, None])[:, 0]
    f_base = ends[b:].gather(1, t[:, None])[:, 0]

    diff = x - base
    n_rows = len(alphas) * b
    chunk = n_rows if internal_batch_size is None else internal_batch_size
    # rows in step-major order: row r is step r // b of sample r % b
    alpha_t = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    weight_t = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    total = torch.zeros_like(x)
    view = (-1,) + (1,) * (x.dim() - 1)
    for start in range(0, n_rows, chunk):
        rows = torch.arange(start, min(start + chunk, n_rows), device=x.device)
        step, sample = rows // b, rows % b
        pts = (base[sample] + alpha_t[step].view(view) * diff[sample]).requires_grad_(True)
        with torch.enable_grad():
            logits = logits_of(model, pts)
            (g,) = torch.autograd.grad(logits.gather(1, t[sample][:, None]).sum(), pts)
        total.index_add_(0, sample, g * weight_t[step].view(view))
    attr = diff * total
    delta = attr.flatten(1).sum(1) - (f_x - f_base)
    return IGResult(attr, delta, t)


class IntegratedGradients(AttributionMethod):
    """Integrated Gradients: ``(x - x') * integral_0^1 grad f_t(x' + a (x - x')) da`` (Sundararajan et al. 2017).

    ``baseline``: the constant baseline image ``x'`` (0 = black). ``steps`` and ``rule``: the
    quadrature (see :func:`quadrature`; Gauss-Legendre converges fastest on smooth paths, Riemann
    sums are the paper's). ``internal_batch_size``: memory cap, the most path points per pass.
    After each call ``last_delta`` holds the per-sample completeness error
    ``sum_i IG_i - (f_t(x) - f_t(x'))`` (axiom of completeness; -> 0 as ``steps`` grows).
    """

    name = "integrated_gradients"
    summary = "Integrated Gradients: path integral of the gradient from a baseline to the input."
    citation = "arXiv:1703.01365"

    def __init__(self, baseline: float = 0.0, steps: int = 32, rule: Rule = "gausslegendre",
                 internal_batch_size: int | None = None):
        quadrature(steps, rule)  # validates steps and rule now, not at the first call
        if internal_batch_size is not None and internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be a positive integer or None, got {internal_batch_size}")
        self.baseline, self.steps, self.rule = baseline, steps, rule
        self.internal_batch_size = internal_batch_size
        self.last_delta: Tensor | None = None

    @classmethod
    def contract_params(cls):
        return {"steps": 8}

    @classmethod
    def experiment_variants(cls, scale: Scale):
        """Experiments: the defaults; quick mode 8 path points."""
        return [{"steps": 8} if scale.quick else {}]

    def attribute(self, model, x, target):
        res = integrated_gradients(model, x, target, self.baseline, self.steps, self.rule, self.internal_batch_size)
        self.last_delta = res.delta
        return res.attribution
