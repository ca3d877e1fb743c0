"""The plugin's op: ``out = where(mask, max(g, 0), 0)`` (reference in PyTorch, Triton kernel for CUDA)."""

import torch
from torch import Tensor

from toolkit_core import kernels


def _guided_relu_grad(g: Tensor, mask: Tensor) -> Tensor:
    return g.clamp(min=0).mul_(mask.view(torch.uint8))  # much faster than torch.where on the CPU


def _examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator(device=device).manual_seed(0)
    shapes = [(4, 3, 17, 19), (2, 1000), (3, 5)]
    return [
        (torch.randn(s, generator=gen, dtype=dtype, device=device),
         torch.rand(s, generator=gen, device=device) > 0.4)
        for s in shapes
    ]


guided_relu_grad = kernels.declare(
    "torchtrust_gbp::guided_relu_grad",
    reference=_guided_relu_grad,
    triton="torchtrust_gbp.triton_kernels:guided_relu_grad",
    examples=_examples,
)
