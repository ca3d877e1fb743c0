"""Stage ``patches``: every weight patch, extracted from each defended model and the plainly trained one
(``extract(defended, plain)``) and applied to a copy of the plain model at the coefficients its class
declares; clean and adversarial (training attack) test accuracy of every patched copy."""

from __future__ import annotations

from typing import Any

from ..catalog import get_info
from .common import datasets, is_main, models
from .config import instantiate, scale_of, training_attack_spec
from .detectors import _test_tensors
from .runner import RunContext, seed_everything


def stage_patches(ctx: RunContext) -> dict[str, Any]:

    cfg = ctx.config
    specs = cfg.methods.get("patches", [])
    _, test = datasets(ctx)
    trained = models(ctx)
    plain_label, plain = next(iter(trained.items()))
    sources = {k: m for k, m in trained.items() if k != plain_label}
    if not sources:
        return {"table": {}, "figures": [], "summary": "no defended model to take a patch from (train a defense)",
                "skipped": {s.label: "no defended model in this run" for s in specs}}
    x, y = _test_tensors(test, 200 if cfg.quick else 500)
    x, y = x.to(ctx.device), y.to(ctx.device)
    attack_spec = training_attack_spec(cfg.settings, cfg.quick)
    attack = instantiate(attack_spec, "attack") if attack_spec is not None else None
    scale = scale_of(cfg.settings, cfg.quick)
    table: dict[str, dict[str, list[dict[str, float]]]] = {}
    errors: dict[str, str] = {}
    advance = ctx.task("patches", len(specs) * len(sources))
    for spec in specs:
        coefficients = get_info(spec.name).cls.experiment_coefficients(scale)
        for src_label, source in sources.items():
            seed_everything(cfg.seed)
            try:
                patch = instantiate(spec, "patch").extract(source.eval(), plain.eval())
                rows = patch.sweep(plain, (x, y), coefficients, attack)
                table.setdefault(spec.label, {})[src_label] = rows
            except Exception as exc:  # one patch's failure is reported, the others still run
                errors[f"{spec.label} from {src_label}"] = f"{type(exc).__name__}: {exc}"
            advance()
    figures = ["patches.png"] if table else []
    if table and is_main(ctx):  # under torchrun every rank computes, rank 0 draws
        _plot(ctx, table, plain_label, attack_spec.label if attack_spec is not None else None)
    summary = f"{len(table)} patch method(s) x {len(sources)} defended model(s)" + (
        f", {len(errors)} error(s)" if errors else "")
    return {"table": table, "target": plain_label, "attack": attack_spec.label if attack_spec else None,
            "errors": errors, "figures": figures, "summary": summary}


def _plot(ctx: RunContext, table: dict, target: str, attack: str | None) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(7.0 * len(table), 3.4), squeeze=False)
    for ax, (name, per_source) in zip(axes[0], table.items()):
        for src, rows in per_source.items():
            cs = [r["coefficient"] for r in rows]
            line = ax.plot(cs, [r["clean_acc"] for r in rows], "s--", ms=3, label=f"clean, from {src}")[0]
            if attack is not None:
                ax.plot(cs, [r["robust_acc"] for r in rows], "o-", ms=3, color=line.get_color(),
                        label=f"{attack}, from {src}")
        ax.set_xlabel(f"coefficient c ({target} + c * patch)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(ctx.figure("patches"), dpi=110)
    plt.close(fig)
