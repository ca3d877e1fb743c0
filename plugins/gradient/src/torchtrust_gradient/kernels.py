"""The plugin's op: ``out = x * grad`` (reference in PyTorch, Triton kernel for CUDA)."""

import torch
from torch import Tensor

from toolkit_core import kernels


def _input_x_gradient(x: Tensor, grad: Tensor) -> Tensor:
    return x * grad


def _examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator(device=device).manual_seed(0)
    shapes = [(4, 3, 17, 19), (1, 1000), (2, 5)]
    return [
        (torch.randn(s, generator=g, dtype=dtype, device=device),
         torch.randn(s, generator=g, dtype=dtype, device=device))
        for s in shapes
    ]


def _backward(ctx, grad_out):
    x, grad = ctx.saved_tensors
    return grad_out * grad, grad_out * x


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


input_x_gradient = kernels.declare(
    "torchtrust_gradient::input_x_gradient",
    reference=_input_x_gradient,
    triton="torchtrust_gradient.triton_kernels:input_x_gradient",
    backward=_backward,
    setup_context=_setup,
    examples=_examples,
)
