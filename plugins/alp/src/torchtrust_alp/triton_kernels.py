"""Triton kernel for the weighted pairing loss (imported only when the Triton backend is used).

One program per row ``i`` streams ``z_i`` and ``z'_i`` once, accumulates ``sum_j (z_ij - z'_ij)^2``
in float32 (float64 for float64 inputs) and writes ``w_i * that``; the ``B`` row values are then summed
and divided by ``B``. Subtraction, squaring, the row reduction and the weighting are fused: ``z - z'`` is never stored.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _row_kernel(z_ptr, za_ptr, w_ptr, out_ptr, D, stride_z, stride_za, BLOCK: tl.constexpr, ACC: tl.constexpr):
    row = tl.program_id(0)
    acc = tl.zeros([BLOCK], dtype=ACC)
    for start in range(0, D, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < D
        a = tl.load(z_ptr + row * stride_z + cols, mask=mask, other=0.0).to(ACC)
        b = tl.load(za_ptr + row * stride_za + cols, mask=mask, other=0.0).to(ACC)
        d = a - b
        acc += d * d
    w = tl.load(w_ptr + row).to(ACC)
    tl.store(out_ptr + row, w * tl.sum(acc, axis=0))


def weighted_pair_loss(z: torch.Tensor, z_adv: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if z.dim() != 2 or z.shape != z_adv.shape or w.shape != z.shape[:1]:
        raise ValueError(
            f"weighted_pair_loss expects z and z_adv of the same shape (B, D) and w of shape (B,), got "
            f"{tuple(z.shape)}, {tuple(z_adv.shape)}, {tuple(w.shape)}"
        )
    z, z_adv, w = z.contiguous(), z_adv.contiguous(), w.contiguous()
    b, d = z.shape
    acc_dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    rows = torch.empty(b, dtype=acc_dtype, device=z.device)
    block = min(1024, triton.next_power_of_2(max(d, 16)))
    acc = tl.float64 if acc_dtype == torch.float64 else tl.float32
    _row_kernel[(b,)](z, z_adv, w, rows, d, z.stride(0), z_adv.stride(0), BLOCK=block, ACC=acc)
    return (rows.sum() / b).to(z.dtype)
