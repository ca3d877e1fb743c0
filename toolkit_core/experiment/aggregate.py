"""Results over seeds: every number of a stage becomes its mean over seeds, with the spread beside it.

A seeded stage (``train``, ``robustness``, ``metrics``) runs once per seed and returns the same
structure each time. :func:`aggregate` walks those structures in step:

* a number present in every seed's result becomes the mean ``m = 1/n sum_i v_i``; its sample standard
  deviation ``s = sqrt(1/(n-1) sum_i (v_i - m)^2)`` (0 for one seed) and the per-seed values are kept
  under ``over_seeds`` at the same path (``over_seeds["std"]["models"]["plain"]["test_acc"]``);
* a boolean becomes ``all(...)`` (a claim "on every seed" holds only when it held on each);
* a list of strings (labels, warnings) becomes their union in first-seen order: a warning raised on
  any seed is kept;
* a key that only some seeds have (``{"warnings": {model: [...]}}`` when seed 2 warned on a model the
  first seed did not) is kept: lists of strings from the seeds that have it are joined as above, dicts
  are joined key by key the same way (a number in them: the mean over the seeds that have it, with no
  spread), any other value is taken from the first seed that has it;
* anything else (labels, figure names, error messages) is taken from the first seed.

:func:`interval95` gives the half width of a 95% Student-t interval of a mean, ``t_{0.975, n-1} s / sqrt n``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["aggregate", "finite_number", "interval95", "lookup", "spread"]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite_number(v: Any) -> bool:
    """``v`` is an int or float (not a bool) and finite: a value a check or a verdict can use."""
    return _is_number(v) and math.isfinite(v)


def _strings(v: Any) -> bool:
    """A list of strings (labels, warnings): joined over seeds."""
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _walk(runs: list[Any]) -> tuple[Any, Any, Any]:
    """(mean tree, std tree, values tree) of structurally parallel results."""
    first = runs[0]
    if isinstance(first, dict):
        mean, std, values = {}, {}, {}
        keys = dict.fromkeys(k for r in runs if isinstance(r, dict) for k in r)
        for key in keys:
            if key == "over_seeds":
                continue
            if all(isinstance(r, dict) and key in r for r in runs):
                m, s, vals = _walk([r[key] for r in runs])
            else:  # only some seeds have it: never dropped; string lists and dicts ({model: [warnings]}) joined
                have = [r[key] for r in runs if isinstance(r, dict) and key in r]
                joinable = all(isinstance(h, dict) for h in have) or all(_strings(h) for h in have)
                m, s, vals = (_walk(have)[0] if joinable else have[0]), None, None
            mean[key] = m
            if s is not None:
                std[key], values[key] = s, vals
        return mean, (std or None), (values or None)
    if isinstance(first, bool):
        return all(bool(r) for r in runs), None, None
    if all(_strings(r) for r in runs):
        return list(dict.fromkeys(v for r in runs for v in r)), None, None
    if all(_is_number(r) for r in runs):
        vals = [float(r) for r in runs]
        n = len(vals)
        m = sum(vals) / n
        s = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        if any(v != v for v in vals):  # NaN in any seed: the mean is NaN, flagged by the health checks
            m = s = float("nan")
        return (int(m) if all(isinstance(r, int) for r in runs) and m == int(m) else m), s, vals
    return first, None, None


def aggregate(runs: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Means over seeds, with ``over_seeds = {"seeds", "std", "values"}`` holding the spread."""
    if len(runs) != len(seeds) or not runs:
        raise ValueError(f"one result per seed is needed, got {len(runs)} result(s) for seeds {seeds}")
    mean, std, values = _walk(runs)
    mean["over_seeds"] = {"seeds": list(seeds), "std": std or {}, "values": values or {}}
    return mean


def lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def spread(res: dict[str, Any], *path: str) -> tuple[float | None, int]:
    """``(std, n)`` of the number at ``path`` of an aggregated stage result (``(None, 1)``: one seed)."""
    over = res.get("over_seeds") or {}
    n = len(over.get("seeds", [None]))
    s = lookup(over.get("std", {}), path)
    return (s if _is_number(s) and n > 1 else None), n


def interval95(std: float, n: int) -> float:
    """Half width of the 95% Student-t confidence interval of a mean of ``n`` values with sample std ``std``."""
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1) * std / math.sqrt(n))
