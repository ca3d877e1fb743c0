"""The plugin's op: ``out = where(mask, max(g, 0), 0)``, the step of the core rule
:class:`~toolkit_core.attribution.rules.GuidedReLU` (reference: the core's PyTorch function; Triton
kernel for CUDA, one pass instead of two)."""

import torch
from torch import Tensor

from toolkit_core import kernels
from toolkit_core.attribution.rules import guided_relu_grad as _core_guided


def _guided_relu_grad(g: Tensor, mask: Tensor) -> Tensor:
    return _core_guided(g, mask)


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
