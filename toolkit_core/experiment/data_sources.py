"""Stage ``datasets``: every data set plugin, a fresh model trained on it with the budget its class
declares (:meth:`~toolkit_core.methods.DataSource.experiment_training`), its test accuracy next to chance,
the same model trained on the class's reference data (if it names one) and its own diagnostics."""

from __future__ import annotations

from typing import Any

import torch

from ..catalog import get_info
from .common import is_main
from .config import instantiate, scale_of
from .runner import RunContext, seed_everything


def _model_for(source, seed: int) -> torch.nn.Module | None:
    seed_everything(seed)
    model = source.experiment_model()
    if model is not None:
        return model
    shape = tuple(source.input_shape)
    if len(shape) == 1:
        from ..models import MLP

        return MLP((shape[0], 100, 100, source.num_classes))
    if len(shape) == 3 and shape[0] == 1 and shape[1] == shape[2] and shape[1] % 4 == 0:
        from ..models import DigitsCNN

        return DigitsCNN(size=shape[1], width=8, hidden=32, num_classes=source.num_classes)
    return None


def _train_and_test(source, budget: dict, seed: int, device: torch.device) -> tuple[torch.nn.Module, dict]:
    from ..training import fit

    model = _model_for(source, seed)
    if model is None:
        raise ValueError(f"no default model for inputs of shape {tuple(source.input_shape)}; the data set's class "
                         "can give one with experiment_model()")
    train, test = source.loaders(batch_size=int(budget.get("batch_size", 64)), seed=seed)
    fit(model, train, None, epochs=int(budget["epochs"]), lr=budget.get("lr"),
        optimizer=budget.get("optimizer", "adam"), seed=seed, device=device, progress=False)
    model.eval()
    xs, ys = zip(*((x, y) for x, y in test))
    x, y = torch.cat(xs).to(device), torch.cat(ys).to(device)
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    return model, {"test_acc": acc, "x": x, "y": y}


def stage_datasets(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    specs = cfg.methods.get("datasets", [])
    scale = scale_of(cfg.settings, cfg.quick)
    table: dict[str, dict[str, float]] = {}
    budgets: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    advance = ctx.task("datasets", len(specs))
    for spec in specs:
        budget = dict(get_info(spec.name).cls.experiment_training(scale))
        try:
            source = instantiate(spec, "dataset")
            model, res = _train_and_test(source, budget, cfg.seed, ctx.device)
            row = {"test_acc": res["test_acc"], "chance": 1.0 / source.num_classes}
            reference = source.reference()
            if reference is not None:
                _, ref = _train_and_test(reference, budget, cfg.seed, ctx.device)
                row["test_acc (trained on reference)"] = ref["test_acc"]
            with torch.no_grad():
                row.update({k: float(v) for k, v in source.diagnostics(model, res["x"], res["y"]).items()})
            table[spec.label] = row
            budgets[spec.label] = budget
        except Exception as exc:  # one data set's failure is reported, the others still run
            errors[spec.label] = f"{type(exc).__name__}: {exc}"
        advance()
    figures = ["datasets.png"] if table else []
    if table and is_main(ctx):  # under torchrun every rank computes, rank 0 draws
        from .figures import grouped_bars

        columns = {"trained on it": [r["test_acc"] for r in table.values()],
                   "trained on reference": [r.get("test_acc (trained on reference)", float("nan"))
                                            for r in table.values()],
                   "chance": [r["chance"] for r in table.values()]}
        grouped_bars(ctx, "datasets", list(table), columns, "test accuracy",
                     "data set plugins: test accuracy of a model trained on each")
    summary = f"{len(table)} data set(s)" + (f", {len(errors)} error(s)" if errors else "")
    return {"table": table, "budgets": budgets, "errors": errors, "figures": figures, "summary": summary}
