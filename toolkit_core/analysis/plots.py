"""Figures of the analysis measures (matplotlib with the Agg backend, written as PNG).

* :func:`randomization_grid` -- heatmaps, one row per method, one column per randomization depth.
* :func:`similarity_curves` -- a measure (SSIM by default) against randomization depth, one line per method.
* :func:`alignment_bars` -- mean input alignment per method (with per-sample spread).
* :func:`sufficiency_curves` -- share of unchanged predictions against k, per method, with the random reference.
* :func:`convergence_curves` -- median |cos| per layer going down from the injection point.

Each function returns the matplotlib ``Figure``; with ``path`` it also saves a PNG and closes the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .similarity import to_2d

__all__ = ["randomization_grid", "similarity_curves", "alignment_bars", "sufficiency_curves", "convergence_curves",
           "heatmap_array", "compact_png"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def compact_png(path: str | Path, colors: int = 256) -> None:
    """Rewrite a PNG with an adaptive palette of ``colors`` (heatmap grids shrink 3-5x, docs stay small).

    Uses Pillow, which matplotlib itself depends on.
    """
    from PIL import Image

    with Image.open(path) as im:
        pal = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    pal.save(path, optimize=True)


def _finish(fig: Any, path: str | Path | None, dpi: int = 80, compact: bool = False) -> Any:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        _plt().close(fig)
        if compact:
            compact_png(path)
    return fig


def heatmap_array(m: Any, percentile: float = 99.5) -> np.ndarray:
    """A map as a 2-D array in [-1, 1]: channels summed, divided by its ``percentile`` of ``|m|``, clipped."""
    a = to_2d(m)
    s = float(np.percentile(np.abs(a), percentile))
    if s <= 0:
        s = float(np.abs(a).max()) or 1.0
    return np.clip(a / s, -1, 1)


def _image(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu().float()
    if x.dim() == 3 and x.shape[0] in (1, 3):
        img = x.permute(1, 2, 0).numpy()
        return img[..., 0] if img.shape[-1] == 1 else np.clip(img, 0, 1)
    return to_2d(x)


def wrap_label(text: str, width: int = 16) -> str:
    """``text`` on lines of at most ``width`` characters, broken after ``(``, ``=`` or ``,`` (a method label
    such as ``lrp(composite=epsilon_plus_flat)`` has no spaces); a piece longer than ``width`` keeps its line."""
    import re

    lines: list[str] = []
    for piece in re.findall(r"[^(=,]*[(=,]?", text):
        if not piece:
            continue
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(lines)


def randomization_grid(
    result: Any, x: torch.Tensor, sample: int = 0, path: str | Path | None = None, cell: float = 1.4,
    title: str | None = None, methods: Sequence[str] | None = None, dpi: int = 80, per_row: int = 1,
) -> Any:
    """Heatmap grid: rows = methods, columns = input (titled with the method), original model, then each
    randomization step.

    ``result`` must come from ``cascading_randomization(..., keep_maps=True)``; ``x`` is the batch it ran on.
    ``methods``: a subset of ``result.methods`` (rows, in this order); ``dpi`` of the saved PNG.
    ``per_row``: methods placed side by side (the rows fill left to right, then top to bottom), so that
    many methods make a wide figure instead of a tall narrow one.
    Under each randomized map: its SSIM and sign-flip SSIM to the original map.
    """
    if result.maps is None:
        raise ValueError("the result holds no maps; run cascading_randomization(..., keep_maps=True)")
    if not 0 <= sample < len(x):
        raise ValueError(f"sample must be in [0, {len(x) - 1}], got {sample}")
    if not isinstance(per_row, int) or per_row < 1:
        raise ValueError(f"per_row must be a positive integer, got {per_row!r}")
    plt = _plt()
    cols = ["input", "original"] + [("+" if result.order == "top_down" and i else "") + b
                                    for i, b in enumerate(result.blocks)]
    rows = list(result.methods if methods is None else methods)
    unknown = [m for m in rows if m not in result.methods]
    if unknown:
        raise ValueError(f"methods {unknown} are not in the result; it has {result.methods}")
    per_row = min(per_row, max(len(rows), 1))
    width = len(cols)
    n_rows, n_cols = -(-len(rows) // per_row), width * per_row
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    img = _image(x[sample])
    for k, method in enumerate(rows):
        r, c0 = divmod(k, per_row)
        c0 *= width
        maps = result.maps[method]
        for c in range(width):
            ax = axes[r][c0 + c]
            if c == 0:  # the method's label over its row's input, horizontal and wrapped: readable, no overlap
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
                ax.set_title(wrap_label(method, 16), fontsize=8, fontweight="bold")
            else:
                ax.imshow(heatmap_array(maps[c - 1][sample]), cmap="bwr", vmin=-1, vmax=1)
                if c >= 2:
                    v = result.scores[method]["ssim"][c - 2, sample]
                    f = result.scores[method]["ssim_flip"][c - 2, sample]
                    ax.set_xlabel(f"SSIM {v:.2f} / flip {f:.2f}", fontsize=7)
                if r == 0:
                    ax.set_title(cols[c], fontsize=8)
    for k in range(len(rows), n_rows * per_row):  # the last row's unused slots
        r, c0 = divmod(k, per_row)
        for c in range(width):
            axes[r][c0 * width + c].axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.3 if title else 0) / fig.get_figheight()))
    return _finish(fig, path, dpi=dpi, compact=True)


def similarity_curves(
    result: Any, metric: str = "ssim", path: str | Path | None = None, title: str | None = None, ax: Any = None,
) -> Any:
    """Mean ``metric`` to the original attribution against randomization depth, one line per method."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(result.blocks) + 2.5), 3.2))
    steps = np.arange(len(result.blocks) + 1)
    for method in result.methods:
        ys = [1.0] + result.mean(method, metric)
        sd = [0.0] + [float(np.nanstd(r)) for r in result.scores[method][metric]]
        ax.plot(steps, ys, marker="o", ms=3, label=method)
        ax.fill_between(steps, np.subtract(ys, sd), np.add(ys, sd), alpha=0.12)
    labels = ["orig"] + [("+" if result.order == "top_down" and i else "") + b for i, b in enumerate(result.blocks)]
    ax.set_xticks(steps)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(metric)
    ax.set_xlabel("randomized (from the logits down)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside the data
    if title:
        ax.set_title(title, fontsize=9)
    if fig is None:
        return ax
    fig.tight_layout()
    return _finish(fig, path)


def alignment_bars(results: Sequence[Any], path: str | Path | None = None, title: str | None = None) -> Any:
    """Mean input alignment ``cos(A, x - x0)`` per method (error bars: std over samples)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.8 * len(results) + 2, 3))
    means = [r.mean for r in results]
    sds = [float(np.std(r.per_sample)) for r in results]
    ax.bar(range(len(results)), means, yerr=sds, color="tab:blue", capsize=3)
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels([r.method for r in results], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("cos(attribution, x - baseline)")
    ax.axhline(0, color="gray", lw=0.5)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def sufficiency_curves(results: Sequence[Any], path: str | Path | None = None, title: str | None = None) -> Any:
    """Share of unchanged predictions against k (percent kept), per method; dashed: random elements."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for r in results:
        ax.plot(r.ks, r.unchanged, marker="o", ms=3, label=r.method)
    if results and results[0].random is not None:
        ax.plot(results[0].ks, results[0].random, ls="--", color="gray", label="random elements")
    ax.set_xscale("log")
    ax.set_xlabel("top-k % of input elements kept")
    ax.set_ylabel("share of predictions unchanged")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside the data
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def convergence_curves(results: Sequence[Any], path: str | Path | None = None, title: str | None = None) -> Any:
    """Median absolute pairwise cosine similarity per layer, from the injection point down to the input."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for r in results:
        ax.plot(range(len(r.layers)), r.median, marker="o", ms=3, label=r.method)
    if results:
        ax.set_xticks(range(len(results[0].layers)))
        ax.set_xticklabels(results[0].layers, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("median |cos| of back-propagated vectors")
    ax.set_xlabel("input of layer (injection point first)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside the data
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)
