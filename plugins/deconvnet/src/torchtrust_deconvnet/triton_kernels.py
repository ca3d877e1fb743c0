"""Triton kernel for the deconvnet ReLU backward (imported only when the Triton backend is used)."""

import torch
import triton
import triton.language as tl


@triton.jit
def _relu_kernel(g_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    g = tl.load(g_ptr + offsets, mask=valid, other=0.0)
    tl.store(out_ptr + offsets, tl.where(g > 0, g, tl.zeros_like(g)), mask=valid)


def relu_grad(g: torch.Tensor) -> torch.Tensor:
    g = g.contiguous()
    out = torch.empty_like(g)
    n = g.numel()
    block = 1024
    _relu_kernel[(triton.cdiv(n, block),)](g, out, n, BLOCK=block)
    return out
