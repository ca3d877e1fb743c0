"""Triton kernel for ``x * grad`` (imported only when the Triton backend is used)."""

import torch
import triton
import triton.language as tl


@triton.jit
def _mul_kernel(x_ptr, g_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    g = tl.load(g_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x * g, mask=mask)


def input_x_gradient(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    if x.shape != grad.shape:
        raise ValueError(f"x and grad must have the same shape, got {tuple(x.shape)} and {tuple(grad.shape)}")
    x, grad = x.contiguous(), grad.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    block = 1024
    _mul_kernel[(triton.cdiv(n, block),)](x, grad, out, n, BLOCK=block)
    return out
