"""Stage ``robustness``: clean / per-attack / worst-case accuracy of every trained model."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from .common import digits
from .config import instantiate
from .figures import plot_robustness
from .runner import RunContext, seed_everything


def stage_robustness(ctx: RunContext) -> dict[str, Any]:
    from ..robustness import evaluate_robustness

    cfg = ctx.config
    _, test = digits(ctx)
    specs = cfg.methods["attacks"]
    if not specs:
        return {"summary": "no attacks configured", "table": {}}
    loader = DataLoader(test, batch_size=256)
    table = {}
    advance = ctx.task("robustness", len(ctx.models))
    for label, model in ctx.models.items():
        seed_everything(cfg.seed)
        attacks = {s.label: instantiate(s, "attack") for s in specs}
        res = evaluate_robustness(model, loader, attacks=attacks, device=ctx.device)
        table[label] = res.to_dict()
        advance()
    plot_robustness(ctx, table)
    worst = {k: v["worst_case_accuracy"] for k, v in table.items()}
    best = max(worst, key=lambda k: worst[k] or 0)
    return {"table": table, "attacks": [s.label for s in specs], "figures": ["robustness.png"],
            "summary": f"most robust: {best} (worst-case accuracy {worst[best]:.3f})"}
