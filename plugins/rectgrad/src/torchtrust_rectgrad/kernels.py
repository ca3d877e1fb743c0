"""The plugin's op: RectGrad's rectifying mask ``where(a * g > tau, g, 0)``, ``tau`` the per-sample
q-th percentile of ``a * g``.

The reference and the percentile selection are the core's (:mod:`toolkit_core.attribution.selection`,
next to the rule :class:`~toolkit_core.attribution.rules.RectifiedReLU`); this plugin adds the Triton
kernel that fuses the product and the mask around the selection on CUDA.
"""

import torch
from torch import Tensor

from toolkit_core import kernels
from toolkit_core.attribution.selection import (  # noqa: F401 - re-exported for tests and users
    SAMPLE_SIZE,
    exact_threshold,
    percentile_threshold,
    sample_index,
)
from toolkit_core.attribution.selection import rectify as _core_rectify


def _rectify(a: Tensor, g: Tensor, q: float) -> Tensor:
    return _core_rectify(a, g, q)


def _examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor, Tensor, float]]:
    gen = torch.Generator(device=device).manual_seed(0)
    out = []
    for s, q in [((4, 3, 17, 19), 98.0), ((2, 1000), 90.0), ((3, 5), 50.0)]:
        a = torch.randn(s, generator=gen, dtype=dtype, device=device).clamp(min=0) + 0.01
        out.append((a, torch.randn(s, generator=gen, dtype=dtype, device=device), q))
    return out


rectify = kernels.declare(
    "torchtrust_rectgrad::rectify",
    reference=_rectify,
    triton="torchtrust_rectgrad.triton_kernels:rectify",
    examples=_examples,
)
