"""Stage ``robustness``: clean / per-attack / worst-case accuracy of every trained model, the
gradient-masking warnings of :func:`toolkit_core.evaluate_robustness`, and, for every configured
certifier (``[[certifiers]]``), certified-accuracy curves over the L2 radius
(:func:`toolkit_core.certification.certify_dataset`) on the first ``CERTIFY_POINTS`` test points."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from .common import digits
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
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
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
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(ctx.figure("certification"), dpi=100)
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


def stage_robustness(ctx: RunContext) -> dict[str, Any]:
    from ..robustness import evaluate_robustness

    cfg = ctx.config
    _, test = digits(ctx)
    specs = cfg.methods["attacks"]
    if not specs and not cfg.methods.get("certifiers"):
        return {"summary": "no attacks configured", "table": {}}
    loader = DataLoader(test, batch_size=256)
    table = {}
    advance = ctx.task("robustness", len(ctx.models))
    for label, model in ctx.models.items():
        if not specs:
            break
        seed_everything(cfg.seed)
        attacks = {s.label: instantiate(s, "attack") for s in specs}
        res = evaluate_robustness(model, loader, attacks=attacks, device=ctx.device)
        table[label] = res.to_dict()
        advance()
    out: dict[str, Any] = {"table": table, "attacks": [s.label for s in specs], "figures": []}
    summary = []
    if table:
        plot_robustness(ctx, table)
        out["figures"].append("robustness.png")
        worst = {k: v["worst_case_accuracy"] for k, v in table.items()}
        best = max(worst, key=lambda k: worst[k] or 0)
        summary.append(f"most robust: {best} (worst-case accuracy {worst[best]:.3f})")
        ensembles = [s.label for s in specs if s.name == "autoattack"]
        if ensembles:
            aa = {m: v["attacks"][ensembles[0]]["accuracy"] for m, v in table.items()}
            out["autoattack"] = aa
            summary.append("AutoAttack: " + ", ".join(f"{m} {a:.3f}" for m, a in aa.items()))
        warned = {m: v["warnings"] for m, v in table.items() if v.get("warnings")}
        if warned:
            out["warnings"] = warned
            summary.append(f"gradient-masking warnings for {', '.join(warned)}")
    cert = _certify_all(ctx, test)
    if cert:
        out["certification"] = cert
        plot_certification(ctx, cert)
        out["figures"].append("certification.png")
    out["summary"] = "; ".join(summary) or "certification only"
    return out
