"""Key-information sufficiency (operational definition ours, after Zheng et al. 2025, arXiv:2503.11160).

For each ``k`` in ``ks`` (percent): keep the ``ceil(k/100 * D)`` input elements with the highest
attribution score (``D`` = elements per sample, channels included), replace every other element by the
baseline, and report the share of samples whose predicted class is unchanged:

    S(k) = 1/B * sum_i 1[ argmax f(m_k(x_i) * x_i + (1 - m_k(x_i)) * x0) = argmax f(x_i) ]

Scores: ``|A|`` (``rank="abs"``, default) or the signed ``A`` (``rank="value"``). A reference curve with
the same number of elements chosen uniformly at random (seeded) is reported alongside: an attribution
carries key information when its curve lies above the random one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._common import (
    analysis_state,
    check_baseline,
    check_input,
    check_model,
    check_target,
    forward_logits,
    resolve_method,
    run_method,
)

__all__ = ["SufficiencyResult", "key_information_sufficiency", "keep_top_k"]


@dataclass
class SufficiencyResult:
    method: str
    ks: list[float]
    unchanged: list[float]  # share of samples whose prediction is unchanged, per k
    random: list[float] | None  # same with randomly chosen elements

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), 6)

        return {
            "test": "key_information_sufficiency",
            "method": self.method,
            "ks": self.ks,
            "unchanged": [clean(v) for v in self.unchanged],
            "random": None if self.random is None else [clean(v) for v in self.random],
        }

    def table(self) -> str:
        head = "k%        " + "  ".join(f"{k:>5g}" for k in self.ks)
        rows = [f"key-information sufficiency of {self.method} (share of predictions unchanged)", head,
                f"{'top-k':<10}" + "  ".join(f"{v:5.2f}" for v in self.unchanged)]
        if self.random is not None:
            rows.append(f"{'random':<10}" + "  ".join(f"{v:5.2f}" for v in self.random))
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def keep_top_k(x: torch.Tensor, scores: torch.Tensor, k: float, baseline: torch.Tensor) -> torch.Tensor:
    """Keep the top ``k`` percent of elements of each sample by ``scores``; the rest becomes ``baseline``."""
    b = x.shape[0]
    d = x[0].numel()
    keep = max(1, min(d, math.ceil(k / 100.0 * d)))
    idx = scores.reshape(b, -1).topk(keep, dim=1).indices
    mask = torch.zeros(b, d, dtype=torch.bool, device=x.device).scatter_(1, idx, True).reshape(x.shape)
    return torch.where(mask, x, baseline)


def key_information_sufficiency(
    model: nn.Module,
    x: torch.Tensor,
    target: Any = None,
    method: Any = None,
    ks: tuple[float, ...] = (1, 2, 5, 10, 20, 50),
    baseline: float | torch.Tensor = 0.0,
    rank: str = "abs",
    random_reference: bool = True,
    seed: int = 0,
    **params: Any,
) -> SufficiencyResult:
    """Share of samples whose prediction survives keeping only the top-k% attributed input elements.

    ``target`` is the class explained (``None``: the predicted class); "unchanged" compares with the
    prediction on the full input. See the module docstring for the formula. The model is handed back
    unchanged.
    """
    check_model(model)
    x = check_input(x)
    base = check_baseline(baseline, x)
    if rank not in ("abs", "value"):
        raise ValueError(f"rank must be 'abs' or 'value', got {rank!r}")
    ks_list = [float(k) for k in (ks if isinstance(ks, (list, tuple)) else [ks])]
    if not ks_list or any(not (0 < k <= 100) for k in ks_list):
        raise ValueError(f"ks must be percentages in (0, 100], got {ks!r}")
    m = resolve_method((method, params) if params and isinstance(method, str) else method)
    with analysis_state(model):
        logits, t = check_target(model, x, target)
        pred = logits.argmax(1)
        a = run_method(m.method, model, x, t)
        scores = a.abs() if rank == "abs" else a
        g = torch.Generator().manual_seed(seed)
        rnd = torch.rand(x.shape, generator=g).to(x.device)
        unchanged, random = [], []
        for k in ks_list:
            xk = keep_top_k(x, scores, k, base)
            unchanged.append(float((forward_logits(model, xk).argmax(1) == pred).float().mean()))
            if random_reference:
                xr = keep_top_k(x, rnd, k, base)
                random.append(float((forward_logits(model, xr).argmax(1) == pred).float().mean()))
    return SufficiencyResult(m.label, ks_list, unchanged, random if random_reference else None)
