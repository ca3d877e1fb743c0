"""The PGD step as two declared ops (PyTorch reference = CPU path and oracle; Triton on CUDA).

``linf_step(x, grad, x0, alpha, eps)``::

    x' = clip_[0,1]( x0 + clip_[-eps,eps]( x + alpha * sign(grad) - x0 ) )

``l2_step(x, grad, x0, alpha, eps)``, per sample ``i`` (all non-batch dimensions flattened)::

    u_i = x_i + alpha * g_i / (||g_i||_2 + 1e-12) - x0_i
    x'_i = clip_[0,1]( x0_i + u_i * min(1, eps / (||u_i||_2 + 1e-12)) )

Clipping to [0, 1] after projecting onto the ball moves every coordinate towards ``x0`` (which lies in
[0, 1]), so the result stays inside the ball (L-inf: the exact projection onto the intersection).
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit_core import kernels

TINY = 1e-12


def _linf_step(x: Tensor, grad: Tensor, x0: Tensor, alpha: float, eps: float) -> Tensor:
    out = torch.sign(grad)
    out.mul_(alpha).add_(x).sub_(x0).clamp_(-eps, eps).add_(x0).clamp_(0.0, 1.0)
    return out


def _l2_step(x: Tensor, grad: Tensor, x0: Tensor, alpha: float, eps: float) -> Tensor:
    b = x.shape[0]
    g = grad.reshape(b, -1)
    gnorm = g.norm(dim=1, keepdim=True).add_(TINY)
    u = g.div(gnorm).mul_(alpha).add_(x.reshape(b, -1)).sub_(x0.reshape(b, -1))
    scale = torch.clamp(eps / u.norm(dim=1, keepdim=True).add_(TINY), max=1.0)
    u.mul_(scale).add_(x0.reshape(b, -1)).clamp_(0.0, 1.0)
    return u.reshape(x.shape)


def _examples(dtype: torch.dtype, device: str) -> list[tuple]:
    g = torch.Generator(device=device).manual_seed(0)
    out = []
    for shape, alpha, eps in (((4, 3, 17, 19), 2 / 255, 8 / 255), ((3, 1000), 0.05, 0.5), ((2, 5), 0.3, 0.2)):
        x0 = torch.rand(shape, generator=g, dtype=dtype, device=device)
        x = (x0 + (torch.rand(shape, generator=g, dtype=dtype, device=device) - 0.5) * eps).clamp(0, 1)
        grad = torch.randn(shape, generator=g, dtype=dtype, device=device)
        out.append((x, grad, x0, alpha, eps))
    return out


linf_step = kernels.declare(
    "torchtrust_pgd::linf_step",
    reference=_linf_step,
    triton="torchtrust_pgd.triton_kernels:linf_step",
    examples=_examples,
)

l2_step = kernels.declare(
    "torchtrust_pgd::l2_step",
    reference=_l2_step,
    triton="torchtrust_pgd.triton_kernels:l2_step",
    examples=_examples,
)
