"""The weighted pairing loss ``sum_i w_i ||z_i - z'_i||^2 / B`` as one op (reference + Triton + autograd).

Forward::

    L(z, z', w) = (1/B) * sum_i w_i * sum_j (z_ij - z'_ij)^2          z, z': (B, D), w: (B,)

Backward (``g`` = upstream gradient of the scalar ``L``)::

    dL/dz_ij  =  2 g w_i (z_ij - z'_ij) / B
    dL/dz'_ij = -2 g w_i (z_ij - z'_ij) / B
    dL/dw_i   =  g ||z_i - z'_i||^2 / B

ALP uses ``w_i = lambda``; AALP uses adaptive, detached weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit_core import kernels


def _weighted_pair_loss(z: Tensor, z_adv: Tensor, w: Tensor) -> Tensor:
    if z.dim() != 2 or z.shape != z_adv.shape or w.shape != z.shape[:1]:
        raise ValueError(
            f"weighted_pair_loss expects z and z_adv of the same shape (B, D) and w of shape (B,), got "
            f"{tuple(z.shape)}, {tuple(z_adv.shape)}, {tuple(w.shape)}"
        )
    d = z - z_adv
    return (w * (d * d).sum(dim=1)).sum() / z.shape[0]


def _setup(ctx, inputs, output):
    z, z_adv, w = inputs
    ctx.save_for_backward(z, z_adv, w)


def _backward(ctx, grad):
    z, z_adv, w = ctx.saved_tensors
    b = z.shape[0]
    d = z - z_adv
    gz = d * (2.0 * grad * w / b).unsqueeze(1)
    gw = (d * d).sum(dim=1) * (grad / b)
    return gz, -gz, gw


def _examples(dtype: torch.dtype, device: str) -> list[tuple[Tensor, Tensor, Tensor]]:
    g = torch.Generator(device=device).manual_seed(0)
    out = []
    for b, d in [(64, 10), (7, 1000), (3, 5), (33, 2051)]:
        z = torch.randn(b, d, generator=g, dtype=dtype, device=device)
        z_adv = z + 0.5 * torch.randn(b, d, generator=g, dtype=dtype, device=device)
        w = torch.rand(b, generator=g, dtype=dtype, device=device) + 0.1
        out.append((z, z_adv, w))
    return out


weighted_pair_loss = kernels.declare(
    "torchtrust_alp::weighted_pair_loss",
    reference=_weighted_pair_loss,
    triton="torchtrust_alp.triton_kernels:weighted_pair_loss",
    backward=_backward,
    setup_context=_setup,
    examples=_examples,
)
"""``weighted_pair_loss(z, z_adv, w) -> scalar``: ``sum_i w_i ||z_i - z_adv_i||^2 / B``, differentiable."""
