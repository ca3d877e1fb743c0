"""Stage ``detectors``: every detector, fitted on the training data with the plainly trained model, rated
by AUROC against uniform noise, upside-down test inputs and adversarial test inputs (the training attack)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from .common import datasets, is_main, models
from .config import instantiate, training_attack_spec
from .runner import RunContext, seed_everything


def _test_tensors(test, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, got = [], [], 0
    for x, y in DataLoader(test, batch_size=256):
        xs.append(x)
        ys.append(y)
        got += len(y)
        if got >= n:
            break
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def abnormal_inputs(ctx: RunContext, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """name -> abnormal inputs the detectors are rated against (same count as the normal ones)."""
    cfg = ctx.config
    g = torch.Generator().manual_seed(cfg.seed)
    low, high = float(x.min()), float(x.max())
    out: dict[str, Any] = {"uniform noise": low + (high - low) * torch.rand(x.shape, generator=g),
                           "upside-down inputs": x.flip(-2)}
    spec = training_attack_spec(cfg.settings, cfg.quick)
    if spec is not None:
        attack = instantiate(spec, "attack")
        out[f"adversarial ({spec.label})"] = attack(model, x.to(ctx.device), y.to(ctx.device)).cpu()
    return out


def stage_detectors(ctx: RunContext) -> dict[str, Any]:
    from ..detection import auroc

    cfg = ctx.config
    specs = cfg.methods.get("detectors", [])
    train, test = datasets(ctx)
    label, model = next(iter(models(ctx).items()))  # the plainly trained model (trained first)
    model = model.eval()
    n = 200 if cfg.quick else 500
    x, y = _test_tensors(test, n)
    seed_everything(cfg.seed)
    abnormal = abnormal_inputs(ctx, model, x, y)
    table: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    advance = ctx.task("detectors", len(specs))
    for spec in specs:
        seed_everything(cfg.seed)
        detector = instantiate(spec, "detector")
        try:
            detector.fit(model, DataLoader(train, batch_size=256))
            normal = detector.score(model, x.to(ctx.device)).cpu()
            table[spec.label] = {name: float(auroc(normal, detector.score(model, xa.to(ctx.device)).cpu()))
                                 for name, xa in abnormal.items()}
        except Exception as exc:  # one detector's failure is reported, the others still run
            errors[spec.label] = f"{type(exc).__name__}: {exc}"
        advance()
    figures = ["detectors.png"] if table else []
    if table and is_main(ctx):  # under torchrun every rank computes, rank 0 draws
        from .figures import grouped_bars

        columns = {name: [row[name] for row in table.values()] for name in abnormal}
        grouped_bars(ctx, "detectors", list(table), columns, "AUROC (test vs abnormal)",
                     f"detectors on {label}: AUROC of normal test inputs vs each abnormal set")
    summary = f"{len(table)} detector(s), AUROC vs {len(abnormal)} abnormal set(s)" + (
        f", {len(errors)} error(s)" if errors else "")
    return {"table": table, "model": label, "normal": len(y), "abnormal": list(abnormal), "errors": errors,
            "figures": figures, "summary": summary}
