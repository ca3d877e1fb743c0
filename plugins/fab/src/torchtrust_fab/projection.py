"""Minimum-norm step onto a hyperplane inside the unit box, exact, for the L-inf and L2 norms.

FAB needs, for a point ``p`` in ``[0, 1]^d``, a normal ``w`` and a right-hand side ``r``::

    delta* = argmin ||delta||_q   subject to   w . delta = r,   0 <= p + delta <= 1

Writing ``s = sign(r)``, ``w' = s w`` and ``R = |r|``, the minimizer moves along ``w'`` until
components saturate at the box: ``delta(t) = clip(s t w, -p, 1 - p)`` (L2) or
``clip(s t sign(w), -p, 1 - p)`` (L-inf), with ``t >= 0`` the smallest value where
``h(t) = w . delta(t) = r``. Component ``i`` contributes ``a_i min(t, b_i)`` to ``|h|`` with

    L2:    a_i = w_i^2,   b_i = cap_i / |w_i|        L-inf:  a_i = |w_i|,  b_i = cap_i

(``cap_i = 1 - p_i`` where ``w'_i > 0``, ``p_i`` where ``w'_i < 0``), so ``h`` is piecewise linear
and increasing in ``t``: sort the breakpoints ``b_i``, evaluate ``h`` at each with cumulative sums,
and interpolate in the segment where it crosses ``R``. When even full saturation does not reach
``R`` (the hyperplane does not meet the box) the fully saturated step is returned.
"""

from __future__ import annotations

import torch

TINY = 1e-12


def _solve(a: torch.Tensor, b: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Smallest ``t >= 0`` with ``sum_i a_i min(t, b_i) = R`` per row (``a, b >= 0``), else ``max b``."""
    b = torch.where(a > 0, b, torch.zeros_like(b))
    bs, order = b.sort(dim=1)
    as_ = a.gather(1, order)
    total = as_.sum(1, keepdim=True)
    cum_ab = (as_ * bs).cumsum(1)
    unsat = total - as_.cumsum(1)  # slope after breakpoint k (components > k still move)
    h = cum_ab + bs * unsat  # h at each breakpoint
    reach = h >= R[:, None]
    k = reach.to(torch.int8).argmax(1)  # first breakpoint where h >= R
    feasible = reach.any(1)
    zero = torch.zeros_like(R)
    s_prev = torch.where(k > 0, cum_ab.gather(1, (k - 1).clamp_min(0)[:, None])[:, 0], zero)
    q_prev = torch.where(k > 0, unsat.gather(1, (k - 1).clamp_min(0)[:, None])[:, 0], total[:, 0])
    t = (R - s_prev) / q_prev.clamp_min(TINY)
    return torch.where(feasible, t, bs[:, -1]).clamp_min(0.0)


def project(p: torch.Tensor, w: torch.Tensor, r: torch.Tensor, norm: str) -> torch.Tensor:
    """``delta*`` above for each row of ``p, w`` (``(N, d)``) and ``r`` (``(N,)``)."""
    s = torch.where(r >= 0, 1.0, -1.0).to(p.dtype)[:, None]
    wp = s * w
    cap = torch.where(wp > 0, 1.0 - p, p)
    if norm == "l2":
        a = wp * wp
        b = cap / wp.abs().clamp_min(TINY)
        t = _solve(a, b, r.abs())
        delta = s * t[:, None] * w
    else:
        a = wp.abs()
        t = _solve(a, cap, r.abs())
        delta = s * t[:, None] * w.sign()
    return torch.minimum(torch.maximum(delta, -p), 1.0 - p)
