"""The figures of the default experiment's stages, written as PNG next to the report."""

from __future__ import annotations

import math
from typing import Any

import torch

from .runner import RunContext


def plot_training(ctx: RunContext, rows: dict[str, dict], std: dict[str, dict] | None = None,
                  flagged: frozenset[str] = frozenset(), names: tuple[str, str] = ("digits CNN", "digits")) -> None:
    """``names``: (model, data) as the report names them; ``std``: per-model spread over seeds (whiskers)."""
    cols = ("train_acc", "test_acc")
    columns = {c.split("_")[0]: [r[c] for r in rows.values()] for c in cols}
    errors = None if std is None else {c.split("_")[0]: [(std.get(m) or {}).get(c) for m in rows] for c in cols}
    grouped_bars(ctx, "training", list(rows), columns, "clean accuracy", f"{names[0]} on {names[1]}: clean accuracy",
                 errors=errors, flagged=flagged)


def grouped_bars(ctx: RunContext, name: str, groups: list[str], columns: dict[str, list[float]], ylabel: str,
                  title: str, errors: dict[str, list[float | None]] | None = None,
                  flagged: frozenset[str] = frozenset()) -> None:
    """One group of bars per model, one bar per column, accuracies in [0, 1]; saved as ``name``.png.

    ``errors`` (same shape as ``columns``) draws +-1 std whiskers; ``flagged`` groups are hatched and
    marked in their tick label. The legend sits to the right of the axes, outside the data.
    """
    import matplotlib.pyplot as plt

    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(3.4 + 0.55 * len(groups) * max(1, len(columns) / 2), 3.4))
    for j, (col, vals) in enumerate(columns.items()):
        xs = [i + (j - (len(columns) - 1) / 2) * width for i in range(len(groups))]
        err = None
        if errors is not None and any(e is not None for e in errors.get(col, [])):
            err = [e or 0.0 for e in errors[col]]
        bars = ax.bar(xs, vals, width, label=col, color=f"C{j}", yerr=err, capsize=2 if err else 0,
                      error_kw={"lw": 0.8})
        for bar, g in zip(bars, groups):
            if g in flagged:
                bar.set_hatch("///")
                bar.set_alpha(0.5)
    ticks = [f"{g}\n(flagged)" if g in flagged else g for g in groups]
    ax.set_xticks(range(len(groups)), ticks, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=f"C{j}", label=col) for j, col in enumerate(columns)]  # plain, even if bar 0 is hatched
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(ctx.figure(name), dpi=110, bbox_inches="tight")
    plt.close(fig)


def robust_columns(entry: dict[str, Any]) -> dict[str, float]:
    """clean, each attack, worst case -> accuracy, from an evaluate_robustness dict."""
    cols = {"clean": entry["clean_accuracy"]}
    cols.update({name: a["accuracy"] for name, a in entry["attacks"].items()})
    cols["worst case"] = entry["worst_case_accuracy"]
    return cols


def plot_robustness(ctx: RunContext, table: dict[str, dict], std: dict[str, dict] | None = None,
                    flagged: frozenset[str] = frozenset(), data: str = "digits") -> None:
    rows = {m: robust_columns(v) for m, v in table.items()}
    columns = {col: [r[col] for r in rows.values()] for col in next(iter(rows.values()))}
    errors = None
    if std is not None:
        errs = {m: robust_columns(fill_std(std.get(m) or {}, v)) for m, v in table.items()}
        errors = {col: [errs[m][col] for m in rows] for col in columns}
    grouped_bars(ctx, "robustness", list(rows), columns, "accuracy",
                 f"{data} test set: clean, per-attack and worst-case accuracy", errors=errors, flagged=flagged)


def fill_std(std: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    """A robustness entry's std tree with the same keys as the entry (missing -> None)."""
    return {"clean_accuracy": std.get("clean_accuracy"), "worst_case_accuracy": std.get("worst_case_accuracy"),
            "attacks": {k: {"accuracy": ((std.get("attacks") or {}).get(k) or {}).get("accuracy")}
                        for k in like["attacks"]}}


def plot_metrics(ctx: RunContext, table: dict[str, dict[str, dict[str, float]]],
                  std: dict[str, dict[str, dict[str, float]]] | None = None,
                  flagged: frozenset[str] = frozenset(), directions: dict[str, dict[str, bool]] | None = None) -> None:
    """One panel per metric: its headline value for every model, +-1 std whiskers.

    The headline is the metric's first declared ``higher_is_better`` key that it returned (else its
    first key); the panel title says which direction is better.

    Flagged models (e.g. at chance) and non-finite values are drawn grey and left out of the axis
    range, so one collapsed model does not squash the others; an off-scale bar is clipped and labelled.
    """
    import matplotlib.pyplot as plt

    names = list(table)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    models = list(dict.fromkeys(m for per in table.values() for m in per))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 0.45 + (0.22 * len(models) + 0.7) * rows),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        present = [m for m in models if m in table[name]]
        returned = table[name][present[0]]
        declared = (directions or {}).get(name, {})
        key = next((k for k in declared if k in returned), next(iter(returned)))
        vals = [table[name][m][key] for m in present]
        errs = [((std or {}).get(name, {}).get(m) or {}).get(key) or 0.0 for m in present]
        ok = [i for i, (m, v) in enumerate(zip(present, vals)) if m not in flagged and finite(v)]
        if ok:
            lo = min(min(vals[i] - errs[i] for i in ok), 0.0)
            hi = max(max(vals[i] + errs[i] for i in ok), 0.0)
            pad = 0.08 * (hi - lo or abs(hi) or 1.0)
            lo, hi = lo - (pad if lo < 0 else 0), hi + pad
        else:
            lo, hi = 0.0, 1.0
        shown = [min(max(v, lo), hi) if finite(v) else 0.0 for v in vals]
        colors = ["#4c72b0" if i in ok else "#bbbbbb" for i in range(len(present))]
        ax.barh(range(len(present)), shown, color=colors,
                xerr=[errs[i] if i in ok else 0 for i in range(len(present))], error_kw={"lw": 0.8})
        for i, v in enumerate(vals):
            if i not in ok:
                why = "flagged" if present[i] in flagged else "not finite"
                ax.text(shown[i], i, f" {v:.3g} ({why})", va="center", fontsize=6, color="#a00")
        ax.set_yticks(range(len(present)), present)
        ax.invert_yaxis()
        ax.set_xlim(lo, hi)
        better = {True: " (higher is better)", False: " (lower is better)"}.get(declared.get(key), "")
        ax.set_title(f"{name}: {key}{better}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(ctx.figure("metrics"), dpi=100, bbox_inches="tight")
    plt.close(fig)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


#: heatmap grids put at most this many methods side by side, then start a new block of rows, so the
#: figure stays within the report's width (1100 px) and its titles are drawn at their size, not shrunk
HEATMAP_COLUMNS = 7


def heatmap_grid(path, x: torch.Tensor, maps: dict[str, torch.Tensor], title: str) -> None:
    """Input then one column per method, one row per sample; more than :data:`HEATMAP_COLUMNS` methods
    wrap into further blocks of rows, each headed by its methods' labels (8.5 pt, about 11 px on the page)."""
    import textwrap

    import matplotlib.pyplot as plt

    from ..analysis.plots import heatmap_array

    items = list(maps.items())
    blocks = [items[k:k + HEATMAP_COLUMNS] for k in range(0, len(items), HEATMAP_COLUMNS)] or [[]]
    n, cols = x.shape[0], min(len(items), HEATMAP_COLUMNS) + 1
    fig, axes = plt.subplots(n * len(blocks), cols, figsize=(1.45 * cols, (1.45 * n + 0.45) * len(blocks) + 0.5),
                             squeeze=False)
    for b, block in enumerate(blocks):
        for i in range(n):
            row = axes[b * n + i]
            img = x[i].detach().cpu().permute(1, 2, 0).numpy()
            row[0].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            for j, (label, m) in enumerate(block, start=1):
                row[j].imshow(heatmap_array(m[i]), cmap="bwr", vmin=-1, vmax=1)
                if i == 0:
                    row[j].set_title("\n".join(textwrap.wrap(label, 16)), fontsize=8.5)
        axes[b * n, 0].set_title("input", fontsize=8.5)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))  # room for the suptitle above the titles
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def plot_gan_scatter(ctx: RunContext, scatter: dict[tuple[str, str], torch.Tensor]) -> None:
    import matplotlib.pyplot as plt

    from ..generative import mixture_spec

    mixtures = list(dict.fromkeys(m for m, _ in scatter))
    labels = list(dict.fromkeys(lbl.split(" / ", 1)[1] for _, lbl in scatter))
    fig, axes = plt.subplots(len(mixtures), len(labels), figsize=(3.0 * len(labels), 3.0 * len(mixtures)),
                             squeeze=False)
    for i, m in enumerate(mixtures):
        modes, _ = mixture_spec(m)
        for j, lbl in enumerate(labels):
            ax = axes[i, j]
            pts = scatter.get((m, f"{m} / {lbl}"))
            if pts is not None:
                ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4, color="tab:blue")
            ax.scatter(modes[:, 0], modes[:, 1], s=12, marker="x", color="red")
            lim = 1.6 if m == "ring" else 6
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_title(f"{m}: {lbl}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(ctx.figure("gan_samples"), dpi=90)
    plt.close(fig)


def plot_gap_correlations(ctx: RunContext, correlations: dict[str, dict[str, Any]]) -> None:
    """One row per measure: ``tau_dir`` (bar, 95% bootstrap whiskers) and ``Psi`` (dot), sorted by tau_dir.

    Positive = the measure ranks models by their generalization gap in the direction it claims.
    """
    import matplotlib.pyplot as plt

    keys = sorted(correlations, key=lambda k: correlations[k]["tau_dir"]
                  if math.isfinite(correlations[k]["tau_dir"]) else -2)
    taus = [correlations[k]["tau_dir"] for k in keys]
    lo = [t - correlations[k]["tau_ci"][0] for t, k in zip(taus, keys)]
    hi = [correlations[k]["tau_ci"][1] - t for t, k in zip(taus, keys)]
    ys = list(range(len(keys)))
    fig, ax = plt.subplots(figsize=(6.4, 1.0 + 0.22 * len(keys)))
    colors = ["C2" if correlations[k]["reading"] == "predicts the gap" else
              "C3" if correlations[k]["reading"] == "ranks the wrong way" else "0.6" for k in keys]
    ax.barh(ys, taus, color=colors, xerr=[lo, hi], error_kw={"lw": 0.8, "capsize": 2}, label="tau_dir (95% CI)")
    ax.plot([correlations[k]["psi"] for k in keys], ys, "k.", label="Psi (granulated)")
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(ys, keys, fontsize=7)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("rank correlation with the generalization gap (direction-corrected)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("does each measure predict the gap? (green: interval above 0, red: below)", fontsize=9)
    fig.tight_layout()
    fig.savefig(ctx.figure("generalization"), dpi=110, bbox_inches="tight")
    plt.close(fig)
