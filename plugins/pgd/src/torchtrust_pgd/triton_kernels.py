"""Fused Triton kernels for the PGD step (imported only when the Triton backend is used).

``linf_step``: one pass, elementwise: sign, step, projection onto the L-inf ball around ``x0``, clamp.
``l2_step``: one program per sample, three sweeps over its row: ``||g||``, then ``||u||`` of the
unprojected step ``u = x + alpha g/||g|| - x0``, then the projected, clamped write.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _linf_kernel(x_ptr, g_ptr, x0_ptr, out_ptr, n, alpha, eps, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    g = tl.load(g_ptr + offs, mask=mask)
    x0 = tl.load(x0_ptr + offs, mask=mask)
    s = tl.where(g > 0, 1.0, tl.where(g < 0, -1.0, 0.0)).to(x.dtype)
    d = x + alpha * s - x0
    d = tl.minimum(tl.maximum(d, -eps), eps)
    y = tl.minimum(tl.maximum(x0 + d, 0.0), 1.0)
    tl.store(out_ptr + offs, y.to(x.dtype), mask=mask)


@triton.jit
def _l2_kernel(x_ptr, g_ptr, x0_ptr, out_ptr, D, alpha, eps, tiny, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64) * D
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, D, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < D
        g = tl.load(g_ptr + row + offs, mask=m, other=0.0).to(tl.float32)
        acc += g * g
    inv_g = 1.0 / (tl.sqrt(tl.sum(acc, axis=0)) + tiny)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, D, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < D
        x = tl.load(x_ptr + row + offs, mask=m, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + row + offs, mask=m, other=0.0).to(tl.float32)
        x0 = tl.load(x0_ptr + row + offs, mask=m, other=0.0).to(tl.float32)
        u = x + alpha * (g * inv_g) - x0
        acc += u * u
    scale = tl.minimum(eps / (tl.sqrt(tl.sum(acc, axis=0)) + tiny), 1.0)
    for start in range(0, D, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < D
        x = tl.load(x_ptr + row + offs, mask=m, other=0.0)
        g = tl.load(g_ptr + row + offs, mask=m, other=0.0).to(tl.float32)
        x0 = tl.load(x0_ptr + row + offs, mask=m, other=0.0).to(tl.float32)
        u = x.to(tl.float32) + alpha * (g * inv_g) - x0
        y = tl.minimum(tl.maximum(x0 + u * scale, 0.0), 1.0)
        tl.store(out_ptr + row + offs, y.to(x.dtype), mask=m)


def _check(x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor) -> None:
    if not (x.shape == grad.shape == x0.shape):
        raise ValueError(
            f"x, grad and x0 must have the same shape, got {tuple(x.shape)}, {tuple(grad.shape)}, {tuple(x0.shape)}"
        )


def linf_step(x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    _check(x, grad, x0)
    x, grad, x0 = x.contiguous(), grad.contiguous(), x0.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    block = 1024
    _linf_kernel[(triton.cdiv(n, block),)](x, grad, x0, out, n, float(alpha), float(eps), BLOCK=block)
    return out


def l2_step(x: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    _check(x, grad, x0)
    x, grad, x0 = x.contiguous(), grad.contiguous(), x0.contiguous()
    out = torch.empty_like(x)
    b = x.shape[0]
    d = x.numel() // max(b, 1)
    block = min(4096, triton.next_power_of_2(max(d, 16)))
    _l2_kernel[(b,)](x, grad, x0, out, d, float(alpha), float(eps), 1e-12, BLOCK=block)
    return out
