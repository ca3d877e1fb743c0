"""Triton kernels for RectGrad: the fused product ``a * g`` and the rectifying mask.

The per-sample percentile (a selection) uses ``torch.kthvalue`` on the device; the two elementwise
passes around it are fused Triton kernels.
"""

import torch
import triton
import triton.language as tl

from .kernels import percentile_threshold


@triton.jit
def _product_kernel(a_ptr, g_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    a = tl.load(a_ptr + offsets, mask=valid, other=0.0)
    g = tl.load(g_ptr + offsets, mask=valid, other=0.0)
    tl.store(out_ptr + offsets, a * g, mask=valid)


@triton.jit
def _mask_kernel(s_ptr, g_ptr, tau_ptr, out_ptr, per_sample, BLOCK: tl.constexpr):
    row = tl.program_id(1)
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < per_sample
    base = row * per_sample
    s = tl.load(s_ptr + base + offsets, mask=valid, other=0.0)
    g = tl.load(g_ptr + base + offsets, mask=valid, other=0.0)
    tau = tl.load(tau_ptr + row)
    tl.store(out_ptr + base + offsets, tl.where(s > tau, g, tl.zeros_like(g)), mask=valid)


def rectify(a: torch.Tensor, g: torch.Tensor, q: float) -> torch.Tensor:
    if a.shape != g.shape:
        raise ValueError(f"a and g must have the same shape, got {tuple(a.shape)} and {tuple(g.shape)}")
    a, g = a.contiguous(), g.contiguous()
    s = torch.empty_like(g)
    n = g.numel()
    block = 1024
    _product_kernel[(triton.cdiv(n, block),)](a, g, s, n, BLOCK=block)
    b = g.shape[0]
    per = n // b
    tau = percentile_threshold(s.view(b, per), q).contiguous()
    out = torch.empty_like(g)
    _mask_kernel[(triton.cdiv(per, block), b)](s, g, tau, out, per, BLOCK=block)
    return out
