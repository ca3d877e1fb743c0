"""Triton kernel for the fused per-class scatter (imported only when the Triton backend is used).

The host sorts the rows by label so that every class is a contiguous segment; program ``(c, i, j)``
walks class ``c``'s segment once and accumulates the ``(i, j)`` tile of ``sum T T^T`` with ``tl.dot``
(IEEE precision, no TF32) and, for ``j == 0``, the ``i`` slice of ``sum T`` -- sums and outer products
in the same pass over the features.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _class_scatter_kernel(
    x_ptr, off_ptr, sums_ptr, outer_ptr, D,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, F64: tl.constexpr,
):
    c = tl.program_id(0)
    pi = tl.program_id(1)
    pj = tl.program_id(2)
    start = tl.load(off_ptr + c)
    end = tl.load(off_ptr + c + 1)
    ci = pi * BLOCK_D + tl.arange(0, BLOCK_D)
    cj = pj * BLOCK_D + tl.arange(0, BLOCK_D)
    mi = ci < D
    mj = cj < D
    acc_t = tl.float64 if F64 else tl.float32
    acc = tl.zeros((BLOCK_D, BLOCK_D), dtype=acc_t)
    sacc = tl.zeros((BLOCK_D,), dtype=acc_t)
    for n0 in range(start, end, BLOCK_N):
        rows = n0 + tl.arange(0, BLOCK_N)
        rm = rows < end
        xi = tl.load(x_ptr + rows[:, None] * D + ci[None, :], mask=rm[:, None] & mi[None, :], other=0.0)
        xj = tl.load(x_ptr + rows[:, None] * D + cj[None, :], mask=rm[:, None] & mj[None, :], other=0.0)
        xi = xi.to(acc_t)
        xj = xj.to(acc_t)
        acc += tl.dot(tl.trans(xi), xj, input_precision="ieee")
        sacc += tl.sum(xi, axis=0)
    out = outer_ptr + c * D * D + ci[:, None] * D + cj[None, :]
    tl.store(out, acc.to(outer_ptr.dtype.element_ty), mask=mi[:, None] & mj[None, :])
    tl.store(sums_ptr + c * D + ci, sacc.to(sums_ptr.dtype.element_ty), mask=mi & (pj == 0))


def class_scatter(features: torch.Tensor, labels: torch.Tensor, num_classes: int):
    if features.dim() != 2 or labels.dim() != 1 or len(features) != len(labels):
        raise ValueError(
            f"expected features (N, D) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    n, d = features.shape
    order = torch.argsort(labels, stable=True)
    xs = features[order].contiguous()
    counts_i = torch.bincount(labels, minlength=num_classes)[:num_classes]
    offsets = torch.zeros(num_classes + 1, dtype=torch.int64, device=features.device)
    offsets[1:] = torch.cumsum(counts_i, 0)
    sums = torch.empty(num_classes, d, dtype=features.dtype, device=features.device)
    outer = torch.empty(num_classes, d, d, dtype=features.dtype, device=features.device)
    block_d = 32 if d > 16 else 16
    grid = (num_classes, triton.cdiv(d, block_d), triton.cdiv(d, block_d))
    _class_scatter_kernel[grid](
        xs, offsets, sums, outer, d,
        BLOCK_N=32, BLOCK_D=block_d, F64=features.dtype == torch.float64,
    )
    return counts_i.to(features.dtype), sums, outer
