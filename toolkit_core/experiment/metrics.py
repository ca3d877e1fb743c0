"""Stage ``metrics``: every generalization metric on every trained model."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from ..precision import autocast
from .common import datasets, models
from .config import instantiate
from .figures import plot_metrics
from .runner import RunContext, seed_everything


def stage_metrics(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    _, test = datasets(ctx)
    workload = cfg.workload
    batch_size = cfg.get("data", "batch_size") if workload is not None else 256
    specs = cfg.methods["metrics"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    directions: dict[str, dict[str, bool]] = {}
    definitions: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    skipped = {}
    for spec in list(specs):
        applies = getattr(instantiate(spec, "metric"), "applies_to", "classifier")
        if applies != "classifier":
            skipped[spec.label] = f"applies to a {applies}, not to the trained classifiers"
    specs = [s for s in specs if s.label not in skipped]
    advance = ctx.task("metrics", len(specs) * len(models(ctx)))
    for spec in specs:
        for label, model in ctx.models.items():
            seed_everything(cfg.seed)
            metric = instantiate(spec, "metric")
            directions[spec.label] = dict(metric.higher_is_better)
            definitions[spec.label] = dict(getattr(metric, "definitions", {}) or {})
            try:
                with autocast(cfg.precision, ctx.device):  # the metric passes at the run's precision
                    values = metric.compute(model, DataLoader(test, batch_size=batch_size))
            except Exception as exc:  # one metric's failure is reported, the others still run
                errors[f"{spec.label} on {label}"] = f"{type(exc).__name__}: {exc}"
                advance()
                continue
            table.setdefault(spec.label, {})[label] = {k: float(v) for k, v in values.items()}
            advance()
    if table:
        plot_metrics(ctx, table)
    summary = f"{len(table)} metric(s) x {len(ctx.models)} model(s)" + (f", {len(errors)} error(s)" if errors else "")
    return {"table": table, "higher_is_better": directions, "definitions": definitions, "errors": errors,
            "skipped": skipped,
            "figures": ["metrics.png"] if table else [], "summary": summary}
