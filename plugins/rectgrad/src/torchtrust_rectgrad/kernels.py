"""The plugin's op: per-sample percentile threshold of ``a * g`` and the rectifying mask.

``rectify(a, g, q) = where(a * g > tau, g, 0)`` with ``tau_b`` the q-th percentile (linear
interpolation, as :func:`torch.quantile`) of ``a_b * g_b`` over all non-batch dimensions.
"""

import torch
from torch import Tensor

from toolkit_core import kernels


def percentile_threshold(s: Tensor, q: float) -> Tensor:
    """Per-row q-th percentile of ``s`` (shape (B, N)), linear interpolation, via ``kthvalue``.

    Equals ``torch.quantile(s, q / 100, dim=1)`` without its input-size limit and full sort.
    """
    n = s.shape[1]
    pos = q / 100.0 * (n - 1)
    lo = int(pos)
    frac = pos - lo
    v_lo = s.kthvalue(lo + 1, dim=1).values
    if frac == 0 or lo + 1 >= n:
        return v_lo
    # the next order statistic: v_lo again if tied, else the smallest value above v_lo
    above = torch.where(s > v_lo[:, None], s, torch.full_like(s, float("inf"))).amin(dim=1)
    tied = (s <= v_lo[:, None]).sum(dim=1) >= lo + 2
    v_hi = torch.where(tied, v_lo, above)
    return v_lo + frac * (v_hi - v_lo)


def _rectify(a: Tensor, g: Tensor, q: float) -> Tensor:
    s = (a * g).reshape(a.shape[0], -1)
    tau = percentile_threshold(s, q)
    keep = s > tau[:, None]
    return torch.where(keep, g.reshape(s.shape), torch.zeros_like(s)).reshape(g.shape)


def _examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor, Tensor, float]]:
    gen = torch.Generator(device=device).manual_seed(0)
    out = []
    for s, q in [((4, 3, 17, 19), 98.0), ((2, 1000), 90.0), ((3, 5), 50.0)]:
        a = torch.randn(s, generator=gen, dtype=dtype, device=device).clamp(min=0) + 0.01
        out.append((a, torch.randn(s, generator=gen, dtype=dtype, device=device), q))
    return out


rectify = kernels.declare(
    "torchtrust_rectgrad::rectify",
    reference=_rectify,
    triton="torchtrust_rectgrad.triton_kernels:rectify",
    examples=_examples,
)
