"""Triton kernel for the blocked k-nearest-neighbour search (imported only for the Triton backend)."""

import torch
import triton
import triton.language as tl

from .knn import check_inputs


@triton.jit
def _knn_tile_kernel(
    q_ptr, p_ptr, out_d_ptr, out_i_ptr, M, N, D, stride_q, stride_p, stride_o,
    K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    rn = pid_n * BLOCK_N + cols
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)
        q = tl.load(q_ptr + rm[:, None] * stride_q + rd[None, :], mask=(rm[:, None] < M) & (rd[None, :] < D), other=0.0)
        p = tl.load(p_ptr + rn[:, None] * stride_p + rd[None, :], mask=(rn[:, None] < N) & (rd[None, :] < D), other=0.0)
        diff = q.to(tl.float32)[:, None, :] - p.to(tl.float32)[None, :, :]
        acc += tl.sum(diff * diff, axis=2)
    acc = tl.where(rn[None, :] < N, acc, float("inf"))
    for t in tl.static_range(K):
        best = tl.min(acc, axis=1)
        arg = tl.argmin(acc, axis=1)
        offs = rm * stride_o + pid_n * K + t
        tl.store(out_d_ptr + offs, tl.sqrt(best), mask=rm < M)
        tl.store(out_i_ptr + offs, (pid_n * BLOCK_N + arg).to(tl.int64), mask=rm < M)
        acc = tl.where(cols[None, :] == arg[:, None], float("inf"), acc)


def knn(queries: torch.Tensor, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    check_inputs(queries, points, k)
    q, p = queries.contiguous(), points.contiguous()
    m, n, d = q.shape[0], p.shape[0], q.shape[1]
    block_m, block_n = 16, 64
    block_d = min(16, triton.next_power_of_2(d))
    n_tiles = triton.cdiv(n, block_n)
    out_d = torch.empty((m, n_tiles * k), dtype=torch.float32, device=q.device)
    out_i = torch.empty((m, n_tiles * k), dtype=torch.int64, device=q.device)
    grid = (triton.cdiv(m, block_m), n_tiles)
    _knn_tile_kernel[grid](
        q, p, out_d, out_i, m, n, d, q.stride(0), p.stride(0), out_d.stride(0),
        K=k, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
    )
    best_d, sel = torch.topk(out_d, k, dim=1, largest=False, sorted=True)
    return best_d.to(queries.dtype), out_i.gather(1, sel)
