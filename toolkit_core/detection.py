"""Rating detectors of abnormal inputs: the area under the ROC curve.

``AUROC = P(s_abnormal > s_normal) + 0.5 P(s_abnormal = s_normal)`` over all (normal, abnormal) pairs,
computed from ranks (Mann-Whitney U) in ``O(n log n)``; equal to ``sklearn.metrics.roc_auc_score``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def auroc(normal: Tensor, abnormal: Tensor) -> float:
    """AUROC of scores where higher means abnormal: 1 = perfect separation, 0.5 = chance."""
    if normal.ndim != 1 or abnormal.ndim != 1 or not len(normal) or not len(abnormal):
        raise ValueError("auroc needs two non-empty 1-D score tensors (normal, abnormal)")
    s = torch.cat([normal, abnormal]).double().cpu()
    order = torch.argsort(s, stable=True)
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    # average ranks over ties
    uniq, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks)
    ranks = (sums / counts)[inverse]
    n0, n1 = len(normal), len(abnormal)
    u = float(ranks[n0:].sum()) - n1 * (n1 + 1) / 2
    return u / (n0 * n1)
