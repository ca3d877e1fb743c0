"""The plugin's op: ``out = max(g, 0)`` (reference in PyTorch, Triton kernel for CUDA)."""

import torch
from torch import Tensor

from toolkit_core import kernels


def _relu_grad(g: Tensor) -> Tensor:
    return g.clamp(min=0)


def _examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor]]:
    gen = torch.Generator(device=device).manual_seed(0)
    return [(torch.randn(s, generator=gen, dtype=dtype, device=device),) for s in [(4, 3, 17, 19), (2, 1000), (3, 5)]]


relu_grad = kernels.declare(
    "torchtrust_deconvnet::relu_grad",
    reference=_relu_grad,
    triton="torchtrust_deconvnet.triton_kernels:relu_grad",
    examples=_examples,
)
