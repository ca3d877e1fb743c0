"""The figures of the default experiment's stages, written as PNG next to the report."""

from __future__ import annotations

import math
from typing import Any

import torch

from .runner import RunContext


def plot_training(ctx: RunContext, rows: dict[str, dict], names: tuple[str, str] = ("digits CNN", "digits")) -> None:
    """``names``: (model, data) as the report names them."""
    columns = {"train": [r["train_acc"] for r in rows.values()], "test": [r["test_acc"] for r in rows.values()]}
    grouped_bars(ctx, "training", list(rows), columns, "clean accuracy", f"{names[0]} on {names[1]}: clean accuracy")


def grouped_bars(ctx: RunContext, name: str, groups: list[str], columns: dict[str, list[float]], ylabel: str,
                 title: str) -> None:
    """One group of bars per model, one bar per column, accuracies in [0, 1]; saved as ``name``.png."""
    import matplotlib.pyplot as plt

    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(2.6 + 1.2 * len(groups), 3.4))
    for j, (col, vals) in enumerate(columns.items()):
        ax.bar([i + (j - (len(columns) - 1) / 2) * width for i in range(len(groups))], vals, width, label=col)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=min(len(columns), 5))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(ctx.figure(name), dpi=110)
    plt.close(fig)


def robust_columns(entry: dict[str, Any]) -> dict[str, float]:
    """clean, each attack, worst case -> accuracy, from an evaluate_robustness dict."""
    cols = {"clean": entry["clean_accuracy"]}
    cols.update({name: a["accuracy"] for name, a in entry["attacks"].items()})
    cols["worst case"] = entry["worst_case_accuracy"]
    return cols


def plot_robustness(ctx: RunContext, table: dict[str, dict], data: str = "digits") -> None:
    rows = {m: robust_columns(v) for m, v in table.items()}
    columns = {col: [r[col] for r in rows.values()] for col in next(iter(rows.values()))}
    grouped_bars(ctx, "robustness", list(rows), columns, "accuracy",
                 f"{data} test set: clean, per-attack and worst-case accuracy")


def plot_metrics(ctx: RunContext, table: dict[str, dict[str, dict[str, float]]]) -> None:
    """One small panel per metric: its headline value (first key) for every model."""
    import matplotlib.pyplot as plt

    names = list(table)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        models = list(table[name])
        key = next(iter(table[name][models[0]]))
        ax.barh(models, [table[name][m][key] for m in models], color="#4c72b0")
        ax.set_title(f"{name}: {key}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.subplots_adjust(left=0.12, right=0.98, hspace=0.6, wspace=0.9)
    fig.savefig(ctx.figure("metrics"), dpi=100)
    plt.close(fig)


def heatmap_grid(path, x: torch.Tensor, maps: dict[str, torch.Tensor], title: str) -> None:
    import matplotlib.pyplot as plt

    from ..analysis.plots import heatmap_array

    rows, cols = x.shape[0], len(maps) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.35 * rows + 0.4), squeeze=False)
    for i in range(rows):
        img = x[i].detach().cpu().permute(1, 2, 0).numpy()
        axes[i, 0].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        for j, (label, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(heatmap_array(m[i]), cmap="bwr", vmin=-1, vmax=1)
            if i == 0:
                axes[i, j].set_title(label, fontsize=6)
    axes[0, 0].set_title("input", fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
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
