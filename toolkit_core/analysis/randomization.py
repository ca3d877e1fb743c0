"""Cascading (and independent) model-parameter randomization test (Adebayo et al. 2018, arXiv:1810.03292).

Protocol: compute each method's attribution ``A_0`` on the trained model; then re-initialize the
model's blocks from the logits downwards -- cumulatively (``order="top_down"``, the *cascading* test)
or one block at a time with all others kept (``order="independent"``) -- and compare the randomized
model's attribution ``A_k`` with ``A_0`` for the *same* target class by the measures of
:mod:`toolkit_core.analysis.similarity`: SSIM, sign-flip SSIM ``max(SSIM(A_0, A_k), SSIM(A_0, -A_k))``,
Spearman of ``|A|`` and of signed ``A``, and Spearman of HOG features. A method whose maps stay similar
after the top layer is randomized does not depend on what the model learned there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import (
    analysis_state,
    check_blocks,
    check_input,
    check_model,
    check_target,
    deepcopy_model,
    find_blocks,
    randomize_,
    resolve_methods,
    run_method,
)
from .similarity import METRICS, compare_maps

__all__ = ["RandomizationResult", "cascading_randomization"]


def _nanmean(v: Sequence[float]) -> float:
    a = np.asarray(v, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


@dataclass
class RandomizationResult:
    """Similarity to the original attribution, per method, per randomized block, per sample.

    ``scores[method][metric]`` is a ``(n_blocks, n_samples)`` array; ``blocks[k]`` is the block
    randomized at step ``k`` (with ``order="top_down"`` step ``k`` has blocks ``0..k`` randomized).
    ``maps[method]`` (when kept) is a ``(n_blocks + 1, B, ...)`` tensor: the original map first.
    """

    methods: list[str]
    blocks: list[str]
    order: str
    seed: int
    target: list[int]
    scores: dict[str, dict[str, np.ndarray]]
    maps: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def mean(self, method: str, metric: str = "ssim") -> list[float]:
        """Mean over samples of ``metric`` for ``method`` at each randomization step (NaNs skipped)."""
        if method not in self.scores:
            raise KeyError(f"no method {method!r}; have {self.methods}")
        if metric not in METRICS:
            raise KeyError(f"no metric {metric!r}; have {list(METRICS)}")
        return [_nanmean(row) for row in self.scores[method][metric]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: means and per-sample values (NaN written as ``None``)."""

        def clean(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), 6)

        return {
            "test": "cascading_randomization",
            "order": self.order,
            "seed": self.seed,
            "blocks": self.blocks,
            "target": self.target,
            "methods": {
                m: {
                    metric: {
                        "mean": [clean(v) for v in self.mean(m, metric)],
                        "per_sample": [[clean(v) for v in row] for row in self.scores[m][metric]],
                    }
                    for metric in METRICS
                }
                for m in self.methods
            },
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self, metric: str = "ssim") -> str:
        """A plain-text table: one row per method, one column per randomization step (means)."""
        head = ["method"] + [("+" if self.order == "top_down" and i else "") + b for i, b in enumerate(self.blocks)]
        rows = [[m] + [f"{v:.3f}" if math.isfinite(v) else "nan" for v in self.mean(m, metric)] for m in self.methods]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
        title = (f"{metric} to the original attribution ({self.order} randomization, "
                 f"mean over {len(self.target)} samples)")
        return "\n".join([title, line(head), line(["-" * w for w in widths]), *map(line, rows)])

    def __str__(self) -> str:
        return self.table()


def cascading_randomization(
    model: nn.Module,
    x: torch.Tensor,
    target: Any = None,
    methods: Any = None,
    order: str = "top_down",
    seed: int = 0,
    blocks: Sequence[Any] | None = None,
    max_blocks: int | None = None,
    keep_maps: bool = False,
) -> RandomizationResult:
    """Model-parameter randomization test of ``methods`` on ``model`` (Adebayo et al. 2018, arXiv:1810.03292).

    Args:
        model: a classifier returning ``(B, C)`` logits. Never modified: randomization runs on a deep copy.
        x: a ``(B, ...)`` batch. target: class indices (int, list, tensor) or ``None`` for the original
            model's prediction; the same classes are explained after randomization.
        methods: method names, objects, ``(name, params)`` pairs, or a dict ``label -> spec``.
        order: ``"top_down"`` (cascading: blocks ``0..k`` randomized at step k) or ``"independent"``
            (only block k randomized at step k).
        seed: block k is re-initialized with seed ``seed + k`` (same draws in both orders).
        blocks: module names (or lists of names) top first; default: :func:`find_blocks` (top-level
            children with parameters, containers expanded, from the logits down).
        max_blocks: stop after this many blocks (from the top).
        keep_maps: also return the attribution maps (for :func:`plots.randomization_grid`).

    Returns:
        :class:`RandomizationResult` with SSIM, sign-flip SSIM, Spearman (abs and signed) and HOG-Spearman.
    """
    check_model(model)
    x = check_input(x)
    if order not in ("top_down", "independent"):
        raise ValueError(f"order must be 'top_down' or 'independent', got {order!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if max_blocks is not None and (isinstance(max_blocks, bool) or not isinstance(max_blocks, int) or max_blocks < 1):
        raise ValueError(f"max_blocks must be a positive int or None, got {max_blocks!r}")
    resolved = resolve_methods(methods)

    work = deepcopy_model(model)
    with analysis_state(work):
        _, t = check_target(work, x, target)
        blks = find_blocks(work, x) if blocks is None else check_blocks(work, blocks)
        if max_blocks is not None:
            blks = blks[:max_blocks]
        modules = dict(work.named_modules())
        original = {m.label: run_method(m.method, work, x, t) for m in resolved}
        pristine = {k: v.detach().clone() for k, v in work.state_dict().items()} if order == "independent" else None

        scores = {m.label: {metric: np.full((len(blks), len(x)), np.nan) for metric in METRICS} for m in resolved}
        maps = {m.label: [original[m.label]] for m in resolved} if keep_maps else None
        for k, (_, names) in enumerate(blks):
            if pristine is not None:
                work.load_state_dict(pristine)
            for n in names:
                randomize_(modules[n], seed + k)
            for m in resolved:
                a_k = run_method(m.method, work, x, t)
                if maps is not None:
                    maps[m.label].append(a_k)
                a_0 = original[m.label]
                for i in range(len(x)):
                    for metric, v in compare_maps(a_0[i], a_k[i]).items():
                        scores[m.label][metric][k, i] = v
    del work
    return RandomizationResult(
        methods=[m.label for m in resolved],
        blocks=[b for b, _ in blks],
        order=order,
        seed=seed,
        target=t.tolist(),
        scores=scores,
        maps={k: torch.stack(v) for k, v in maps.items()} if maps is not None else None,
    )
