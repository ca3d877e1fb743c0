"""Stage ``robustness``: clean / per-attack / worst-case accuracy of every trained model, the
gradient-masking warnings of :func:`toolkit_core.evaluate_robustness`, and, for every configured
certifier (``[[certifiers]]``), certified-accuracy curves over the L2 radius
(:func:`toolkit_core.certification.certify_dataset`) on the first ``CERTIFY_POINTS`` test points.

The test set is streamed in batches. Under torchrun each rank evaluates whole batches ``i`` with
``i % world_size == rank`` (the batches of the one-process run, so seeded attacks draw the same
noise), the per-point outcomes are gathered and put back in dataset order, and every rank holds the
same result; rank 0 writes it."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..catalog import get_info
from .common import datasets, is_main, models, names
from .config import instantiate
from .figures import plot_robustness
from .runner import RunContext, seed_everything

#: test points certified per model and certifier (full run, quick run)
CERTIFY_POINTS = (200, 20)
#: radii of the certified-accuracy curves (digits in [0, 1], 16 x 16)
RADII = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)


def plot_certification(ctx: RunContext, cert: dict[str, dict[str, dict]]) -> None:
    """One panel per certifier: certified accuracy against the radius, one line per model."""
    import matplotlib.pyplot as plt

    names = sorted({c for per in cert.values() for c in per})
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for model, per in cert.items():
            if name in per:
                curve = per[name]["curve"]
                ax.plot([float(r) for r in curve], list(curve.values()), marker="o", ms=3, label=model)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("L2 radius", fontsize=8)
        ax.set_ylabel("certified accuracy", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside the data
    fig.tight_layout()
    fig.savefig(ctx.figure("certification"), dpi=100, bbox_inches="tight")
    plt.close(fig)


def _certify_all(ctx: RunContext, test) -> dict[str, dict[str, dict]]:
    from ..certification import certify_dataset

    cfg = ctx.config
    specs = cfg.methods.get("certifiers", [])
    if not specs:
        return {}
    points = CERTIFY_POINTS[1 if cfg.quick else 0]
    loader = DataLoader(test, batch_size=20)
    out: dict[str, dict[str, dict]] = {}
    advance = ctx.task("certification", len(ctx.models) * len(specs))
    for label, model in ctx.models.items():
        out[label] = {}
        for spec in specs:
            seed_everything(cfg.seed)
            res = certify_dataset(instantiate(spec, "certifier"), model, loader, limit=points, device=ctx.device)
            out[label][spec.label] = res.to_dict(RADII)
            advance()
    return out


def sharded_robustness(model, test, attacks: dict, device: torch.device, batch_size: int, num_workers: int = 0,
                       progress: bool = True, precision: str = "fp32"):
    """``evaluate_robustness`` on this rank's batches, gathered over ranks into one RobustnessResult
    (``precision``: autocast for the forward passes, :mod:`toolkit_core.precision`)."""
    from ..robustness import _comparison_warnings, evaluate_robustness
    from ..training import distributed as dist_utils
    from ..workloads import eval_loader

    dist = dist_utils.setup(device) if dist_utils.dist.is_initialized() else dist_utils.DistContext(device=device)
    loader = eval_loader(test, batch_size, dist.rank, dist.world_size, num_workers)
    res = evaluate_robustness(model, loader, attacks=attacks, device=device, progress=progress, precision=precision)
    if not dist.distributed:
        return res
    mine = (loader.batch_sampler.indices(), res.clean, res.robust, res.seconds, res.components, res.passes)
    parts = dist_utils.all_gather_object(mine, dist)
    order = torch.tensor([i for p in parts for i in p[0]]).argsort()
    clean = torch.cat([p[1] for p in parts])[order]
    robust = {k: torch.cat([p[2][k] for p in parts])[order] for k in res.robust}
    seconds = {k: sum(p[3][k] for p in parts) for k in res.seconds}
    components = {k: {c: torch.cat([p[4][k][c] for p in parts])[order] for c in comp}
                  for k, comp in res.components.items()}
    passes = {k: {c: sum(p[5][k][c] for p in parts) for c in per} for k, per in res.passes.items()}
    merged = dataclasses.replace(res, clean=clean, robust=robust, seconds=seconds, components=components,
                                 passes=passes)
    # the sweep ran on rank 0's first batch, the one-process run's first batch; comparisons on all points
    merged.warnings = [w for w in res.warnings if w not in _comparison_warnings(res, attacks)]
    merged.warnings += _comparison_warnings(merged, attacks)
    return merged


def stage_robustness(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    _, test = datasets(ctx)
    specs = cfg.methods["attacks"]
    if not specs and not cfg.methods.get("certifiers"):
        return {"summary": "no attacks configured", "table": {}}
    workload = cfg.workload
    batch_size = cfg.get("data", "batch_size") if workload is not None else 256
    workers = workload[1].num_workers if workload is not None else 0
    table = {}
    todo = models(ctx)
    advance = ctx.task("robustness", len(todo))
    for label, model in todo.items():
        if not specs:
            break
        seed_everything(cfg.seed)
        attacks = {s.label: instantiate(s, "attack") for s in specs}
        res = sharded_robustness(model, test, attacks, ctx.device, batch_size, workers, ctx.progress is not None,
                                 precision=cfg.precision)
        table[label] = res.to_dict()
        advance()
    out: dict[str, Any] = {"table": table, "attacks": [s.label for s in specs], "figures": []}
    summary = []
    if table:
        if is_main(ctx):
            plot_robustness(ctx, table, data=names(ctx)[1])
        out["figures"].append("robustness.png")
        worst = {k: v["worst_case_accuracy"] for k, v in table.items()}
        best = max(worst, key=lambda k: worst[k] or 0)
        summary.append(f"most robust: {best} (worst-case accuracy {worst[best]:.3f})")
        ensembles = [s for s in specs if get_info(s.name).cls.ensemble]
        if ensembles:
            aa = {m: v["attacks"][ensembles[0].label]["accuracy"] for m, v in table.items()}
            out["ensemble"] = {"attack": ensembles[0].label, "accuracy": aa}
            summary.append(f"{ensembles[0].name}: " + ", ".join(f"{m} {a:.3f}" for m, a in aa.items()))
        warned = {m: v["warnings"] for m, v in table.items() if v.get("warnings")}
        if warned:
            out["warnings"] = warned
            summary.append(f"gradient-masking warnings for {', '.join(warned)}")
    cert = _certify_all(ctx, test)
    if cert:
        out["certification"] = cert
        if is_main(ctx):
            plot_certification(ctx, cert)
        out["figures"].append("certification.png")
    out["summary"] = "; ".join(summary) or "certification only"
    return out
