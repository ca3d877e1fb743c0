"""Stage ``train``: a small digits CNN trained plainly and with every configured defense."""

from __future__ import annotations

from typing import Any

import torch

from .common import accuracy, digits, new_model, safe_label
from .config import MethodSpec, instantiate
from .figures import plot_training
from .runner import RunContext


def _defense(ctx: RunContext, spec: MethodSpec):
    """Create a defense; one that takes an attack but names none gets a digits-sized PGD."""
    from ..catalog import get_info

    takes_attack = any(p.name == "attack" for p in get_info(spec.name).parameters)
    if takes_attack and spec.attack is None and "pgd" in _installed("attack"):
        t = ctx.config.settings["train"]
        attack = MethodSpec("pgd", {"eps": t["attack_eps"], "alpha": t["attack_alpha"], "steps": t["attack_steps"]})
        spec = MethodSpec(spec.name, spec.params, spec.line, attack)
    return instantiate(spec, "defense")


def _installed(kind: str) -> list[str]:
    from ..catalog import list_methods

    return list_methods(kind)


def stage_train(ctx: RunContext) -> dict[str, Any]:
    from ..training import fit, save_atomic

    cfg = ctx.config
    train, test = digits(ctx)
    specs = [MethodSpec("plain")] + list(cfg.methods["defenses"])
    rows, reused = {}, []
    advance = ctx.task("train models", len(specs))
    models_dir = ctx.state / "models"
    models_dir.mkdir(exist_ok=True)
    for spec in specs:
        label = spec.label
        model = new_model(ctx)
        weights = models_dir / f"{safe_label(label)}-{cfg.fingerprint('train')}.pt"
        if weights.exists():
            saved = torch.load(weights, map_location=ctx.device, weights_only=False)
            model.load_state_dict(saved["state_dict"])
            rows[label] = saved["row"]
            reused.append(label)
        else:
            defense = None if spec.name == "plain" else _defense(ctx, spec)
            history = fit(model, train, defense=defense, epochs=cfg.get("train", "epochs"),
                          lr=cfg.get("train", "lr"), optimizer=cfg.get("train", "optimizer"),
                          batch_size=cfg.get("data", "batch_size"), seed=cfg.seed, device=ctx.device,
                          checkpoint_dir=ctx.state / "checkpoints" / safe_label(label), resume=True, progress=False)
            model.eval()
            row = {"defense": spec.name, "params": spec.to_dict(), "epochs": len(history),
                   "final_loss": history.last.get("loss"), "train_acc": accuracy(model, train, ctx.device),
                   "test_acc": accuracy(model, test, ctx.device), "time_s": sum(history["time_s"])}
            rows[label] = row
            save_atomic({"state_dict": model.state_dict(), "row": row}, weights)
        ctx.models[label] = model.eval()
        advance()
    plot_training(ctx, rows)
    best = max(rows.values(), key=lambda r: r["test_acc"])
    ctx.data["reused_models"] = reused  # bookkeeping for the runner, not a result
    return {"models": rows, "figures": ["training.png"],
            "summary": f"{len(rows)} model(s); best test accuracy {best['test_acc']:.3f}"}
