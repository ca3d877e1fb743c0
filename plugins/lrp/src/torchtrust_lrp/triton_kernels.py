"""Triton kernels for LRP's stabilized divide (imported only for the Triton backend)."""

import torch
import triton
import triton.language as tl


@triton.jit
def _divide_kernel(num_ptr, den_ptr, out_ptr, eps, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    num = tl.load(num_ptr + offsets, mask=valid, other=0.0)
    den = tl.load(den_ptr + offsets, mask=valid, other=1.0)
    d = den + tl.where(den >= 0, eps, -eps)
    safe = tl.where(d == 0, tl.full(d.shape, 1.0, d.dtype), d)
    out = tl.where(d == 0, tl.zeros_like(num), num / safe)
    tl.store(out_ptr + offsets, out, mask=valid)


def stabilized_divide(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    num, den = torch.broadcast_tensors(num, den)
    num, den = num.contiguous(), den.contiguous()
    out = torch.empty_like(num)
    n = num.numel()
    _divide_kernel[(triton.cdiv(n, 1024),)](num, den, out, float(eps), n, BLOCK=1024)
    return out
