"""The op ``torchtrust_mmc::knn``: exact k nearest neighbours of query rows among points, blocked.

``knn(queries (M, D), points (N, D), k) -> (dist (M, k), idx (M, k))``, each row sorted by increasing
Euclidean distance. The reference walks over ``points`` in blocks of 4096 rows (``torch.cdist`` on the
block, ``torch.topk`` per row, merged with the running best ``k``), so it never holds an ``M x N``
matrix; the Triton kernel computes one ``BLOCK_M x BLOCK_N`` distance tile per program, keeps the
``k`` smallest of each row of the tile, and a final ``torch.topk`` merges the per-tile candidates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit_core import kernels

POINT_BLOCK = 4096


def check_inputs(queries: Tensor, points: Tensor, k: int) -> None:
    """Both implementations' argument check: ``queries (M, D)``, ``points (N, D)``, ``1 <= k <= N``."""
    if queries.dim() != 2 or points.dim() != 2 or queries.shape[1] != points.shape[1]:
        raise ValueError(
            f"knn expects queries (M, D) and points (N, D) with the same D, got {tuple(queries.shape)} "
            f"and {tuple(points.shape)}"
        )
    if not 1 <= k <= points.shape[0]:
        raise ValueError(f"k must be in [1, N={points.shape[0]}], got {k}")


def _knn(queries: Tensor, points: Tensor, k: int) -> tuple[Tensor, Tensor]:
    check_inputs(queries, points, k)
    best_d = torch.full((queries.shape[0], 0), float("inf"), dtype=queries.dtype, device=queries.device)
    best_i = torch.zeros((queries.shape[0], 0), dtype=torch.long, device=queries.device)
    for s in range(0, points.shape[0], POINT_BLOCK):
        block = points[s : s + POINT_BLOCK]
        d = torch.cdist(queries, block, compute_mode="donot_use_mm_for_euclid_dist")
        kk = min(k, block.shape[0])
        bd, bi = torch.topk(d, kk, dim=1, largest=False, sorted=True)
        cand_d = torch.cat([best_d, bd], dim=1)
        cand_i = torch.cat([best_i, bi + s], dim=1)
        kk = min(k, cand_d.shape[1])
        best_d, sel = torch.topk(cand_d, kk, dim=1, largest=False, sorted=True)
        best_i = cand_i.gather(1, sel)
    return best_d.contiguous(), best_i.contiguous()


def _fake(queries: Tensor, points: Tensor, k: int) -> tuple[Tensor, Tensor]:
    return queries.new_empty(queries.shape[0], k), queries.new_empty(queries.shape[0], k, dtype=torch.long)


def _examples(dtype: torch.dtype, device: str) -> list[tuple]:
    g = torch.Generator(device=device).manual_seed(0)
    out = []
    for m, n, d, k in [(19, 150, 2, 5), (9, 100, 40, 7), (17, 70, 3, 16)]:
        q = torch.rand(m, d, generator=g, dtype=dtype, device=device)
        p = torch.rand(n, d, generator=g, dtype=dtype, device=device)
        out.append((q, p, k))
    return out


knn = kernels.declare(
    "torchtrust_mmc::knn",
    reference=_knn,
    triton="torchtrust_mmc.triton_kernels:knn",
    fake=_fake,
    examples=_examples,
)
