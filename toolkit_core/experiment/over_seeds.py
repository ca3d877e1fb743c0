"""After the seeded stages ran on every seed: their figures and summaries from the means and spreads.

Each ``finish_<stage>(ctx, res, done)`` takes the aggregated result (:func:`.aggregate.aggregate`) and
the stages finished so far, redraws the stage's figure with +-1 std whiskers (flagged models hatched or
left out of axis scaling, see :mod:`.health`), and rewrites the summary from the means.
"""

from __future__ import annotations

from typing import Any

from .aggregate import spread
from .common import names
from .health import check_training, collapsed_models
from .runner import RunContext


def pm(mean: float, std: float | None) -> str:
    """``0.912 +- 0.013`` (or just the mean when there is no spread)."""
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _seeds_text(res: dict[str, Any]) -> str:
    n = len(res.get("over_seeds", {}).get("seeds", [0]))
    return f"mean ± std over {n} seeds" if n > 1 else "1 seed (no spread)"


def _std(res: dict[str, Any], key: str) -> dict | None:
    """The std tree under ``key``, or None with a single seed (no whiskers of zero length)."""
    over = res.get("over_seeds", {})
    return over.get("std", {}).get(key) if len(over.get("seeds", [])) > 1 else None


def _collapsed(done: dict[str, dict[str, Any]]) -> frozenset[str]:
    return frozenset(collapsed_models(check_training(done["train"]))) if "train" in done else frozenset()


def finish_train(ctx: RunContext, res: dict[str, Any], done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from .figures import plot_training

    rows = res.get("models", {})
    if not rows:
        return res
    std = _std(res, "models")
    flagged = frozenset(collapsed_models(check_training(res)))
    plot_training(ctx, rows, std, flagged, names=names(ctx))
    best = max(rows, key=lambda k: rows[k]["test_acc"])
    s, _ = spread(res, "models", best, "test_acc")
    res["summary"] = (f"{len(rows)} model(s); best test accuracy {pm(rows[best]['test_acc'], s)} ({best}); "
                      f"{_seeds_text(res)}")
    return res


def finish_robustness(ctx: RunContext, res: dict[str, Any], done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from .figures import plot_robustness

    table = res.get("table", {})
    if not table:
        return res
    flagged = _collapsed(done)
    plot_robustness(ctx, table, _std(res, "table"), flagged, data=names(ctx)[1])
    worst = {k: v["worst_case_accuracy"] for k, v in table.items() if k not in flagged}
    if worst:
        best = max(worst, key=lambda k: worst[k] if worst[k] == worst[k] else -1)
        s, _ = spread(res, "table", best, "worst_case_accuracy")
        res["summary"] = (f"most robust: {best} (worst-case accuracy {pm(worst[best], s)}); {_seeds_text(res)}"
                          + (f"; {len(flagged)} collapsed model(s) left out" if flagged else ""))
    return res


def finish_metrics(ctx: RunContext, res: dict[str, Any], done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from .figures import plot_metrics

    table = res.get("table", {})
    if table:
        plot_metrics(ctx, table, _std(res, "table"), _collapsed(done), res.get("higher_is_better"))
        res["summary"] = f"{res.get('summary', '')}; {_seeds_text(res)}"
    return res


FINISH = {"train": finish_train, "robustness": finish_robustness, "metrics": finish_metrics}
