"""Triton kernel for the guided-ReLU backward mask (imported only when the Triton backend is used)."""

import torch
import triton
import triton.language as tl


@triton.jit
def _guided_kernel(g_ptr, m_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offsets < n
    g = tl.load(g_ptr + offsets, mask=valid, other=0.0)
    m = tl.load(m_ptr + offsets, mask=valid, other=0)
    keep = (m != 0) & (g > 0)
    tl.store(out_ptr + offsets, tl.where(keep, g, tl.zeros_like(g)), mask=valid)


def guided_relu_grad(g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if g.shape != mask.shape:
        raise ValueError(f"g and mask must have the same shape, got {tuple(g.shape)} and {tuple(mask.shape)}")
    g, m = g.contiguous(), mask.contiguous().view(torch.uint8)
    out = torch.empty_like(g)
    n = g.numel()
    block = 1024
    _guided_kernel[(triton.cdiv(n, block),)](g, m, out, n, BLOCK=block)
    return out
