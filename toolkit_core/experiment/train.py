"""Stage ``train``: the model (the digits CNN, or the user's [model], from its checkpoint if given)
trained plainly and with every configured defense. Under torchrun the training runs under DDP
(``fit``); rank 0 writes the weights."""

from __future__ import annotations

from typing import Any

from .common import accuracy, datasets, is_main, names, new_model, safe_label
from .config import MethodSpec, instantiate
from .figures import plot_training
from .runner import RunContext


def stage_train(ctx: RunContext) -> dict[str, Any]:
    """Train (or reuse) one model per defense; each is keyed by a hash of everything that determines it.

    The weights ``state/models/<label>-<key>.pt`` and the training checkpoint
    ``state/checkpoints/<label>-<key>/`` are found again only by a run with the same key
    (:func:`~toolkit_core.experiment.outdir.model_key`); they are read with ``weights_only=True`` and
    the key stored inside must match, so another config's or seed's model is never reused.
    """
    from ..training import fit, save_atomic
    from ..training.checkpoint import load_file
    from .outdir import data_hash, model_key

    cfg = ctx.config
    train, test = datasets(ctx)
    batch_size = cfg.get("data", "batch_size")
    specs = [MethodSpec("plain")] + list(cfg.methods["defenses"])
    rows, reused = {}, []
    advance = ctx.task("train models", len(specs))
    models_dir = ctx.state / "models"
    models_dir.mkdir(exist_ok=True)
    # the digits: a hash of the tensors; a user's data: its [data] settings (in the key) and its length
    data = data_hash(*train.tensors) if hasattr(train, "tensors") else f"files:{len(train)}"
    for spec in specs:
        label = spec.label
        model = new_model(ctx)
        key = model_key(cfg, spec.to_dict(), data)
        weights = models_dir / f"{safe_label(label)}-{key}.pt"
        saved = load_file(weights, map_location=ctx.device) if weights.exists() else None
        if isinstance(saved, dict) and saved.get("key") == key:
            model.load_state_dict(saved["state_dict"])
            rows[label] = saved["row"]
            reused.append(label)
        else:
            defense = None if spec.name == "plain" else instantiate(spec, "defense")
            history = fit(model, train, defense=defense, epochs=cfg.get("train", "epochs"),
                          lr=cfg.get("train", "lr"), optimizer=cfg.get("train", "optimizer"),
                          batch_size=batch_size, seed=cfg.seed, device=ctx.device,
                          checkpoint_dir=ctx.state / "checkpoints" / f"{safe_label(label)}-{key}", resume=True,
                          progress=ctx.progress is not None, precision=cfg.precision)
            model.eval()
            row = {"defense": spec.name, "params": spec.to_dict(), "epochs": len(history),
                   "final_loss": history.last.get("loss"), "train_acc": accuracy(model, train, ctx.device, batch_size),
                   "test_acc": accuracy(model, test, ctx.device, batch_size), "time_s": sum(history["time_s"])}
            rows[label] = row
            if is_main(ctx):
                save_atomic({"state_dict": model.state_dict(), "row": row, "key": key}, weights)
        ctx.models[label] = model.eval()
        advance()
    if is_main(ctx):
        plot_training(ctx, rows, names=names(ctx))
    best = max(rows.values(), key=lambda r: r["test_acc"])
    ctx.data["reused_models"] = reused  # bookkeeping for the runner, not a result
    return {"models": rows, "figures": ["training.png"],
            "data": {"train": len(train), "test": len(test), "size": cfg.get("data", "size")},
            "summary": f"{len(rows)} model(s); best test accuracy {best['test_acc']:.3f}"}
