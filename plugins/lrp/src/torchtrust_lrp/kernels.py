"""The plugin's ops (reference in PyTorch, Triton kernels for CUDA).

* ``stabilized_divide(num, den, eps) = num / (den + eps * sign(den))`` with ``sign(0) = 1``; a zero
  denominator (possible only for ``eps == 0``) gives 0 -- the forward-time ratio ``z / z'``.
"""

import torch
from torch import Tensor

from toolkit_core import kernels
from toolkit_core.attribution.rules import stabilized_divide as _core_divide


def _stabilized_divide(num: Tensor, den: Tensor, eps: float) -> Tensor:
    out = _core_divide(num, den, eps)
    return out.clone() if out is num or out is den else out  # custom ops must return new tensors


def _divide_examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor, Tensor, float]]:
    gen = torch.Generator(device=device).manual_seed(0)
    out = []
    for s, eps in [((4, 3, 17, 19), 1e-6), ((2, 1000), 0.25), ((3, 5), 0.0)]:
        num = torch.randn(s, generator=gen, dtype=dtype, device=device)
        den = torch.randn(s, generator=gen, dtype=dtype, device=device) + 0.05
        den.view(-1)[::7] = 0.0  # exercise sign(0) = 1 and 0/0 := 0
        out.append((num, den, eps))
    return out


stabilized_divide = kernels.declare(
    "torchtrust_lrp::stabilized_divide",
    reference=_stabilized_divide,
    triton="torchtrust_lrp.triton_kernels:stabilized_divide",
    examples=_divide_examples,
)
