"""Studies of the seed-pool plugins (issue 18) on the bundled digits; prints numbers, writes figures.

    python benchmarks/seed_pool.py calibration         # reliability diagrams, docs/figures/calibration.png
    python benchmarks/seed_pool.py feature_complexity  # docs/figures/feature_complexity.png
    python benchmarks/seed_pool.py cuda_figure         # docs/figures/cuda_unlearnable.png (clean vs poisoned)
    python benchmarks/seed_pool.py mahalanobis         # AUROC table, docs/figures/mahalanobis.png

calibration: a DigitsCNN trained for a few epochs and one trained far longer (over-confident), their
ECE/MCE/Brier/NLL on the digits test split, and the reliability diagram of each.

feature_complexity: DigitsCNNs of two widths trained on the digits; iterative feature merging at
several tolerances (probe: 512 training images); features left per layer and the merged network's
test accuracy (a pruning without retraining).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def calibration_study() -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_calibration import Calibration, reliability_diagram

    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model

    x, y = load_digits(16, "test", seed=0).tensors
    metric = Calibration(bins=15)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), constrained_layout=True)
    out = {}
    for ax, epochs in zip(axes, (4, 60)):
        model = digits_model(epochs=epochs)
        probs, labels = metric.probabilities(model, (x, y))
        out[f"epochs_{epochs}"] = metric(model, (x, y))
        reliability_diagram(probs, labels, bins=15, ax=ax, label=f"{epochs} epochs")
        ax.set_title(f"DigitsCNN, {epochs} epochs: ECE {out[f'epochs_{epochs}']['ece_width']:.3f}")
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "calibration.png", dpi=110)
    return out


def feature_complexity_study() -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_feature_complexity import merge_features

    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model

    xtr, ytr = load_digits(16, "train", seed=0).tensors
    xte, yte = load_digits(16, "test", seed=0).tensors
    tols = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1)
    out: dict = {}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
    for width, hidden in ((8, 32), (16, 64)):
        model = digits_model(width=width, hidden=hidden)
        rows = []
        for tol in tols:
            merged, report = merge_features(model, xtr[:512], tol)
            with torch.no_grad():
                acc = float((merged(xte).argmax(1) == yte).float().mean())
                acc0 = float((model(xte).argmax(1) == yte).float().mean())
            rows.append({"tol": tol, "remaining": report.remaining, "original": report.original,
                         "complexity": sum(report.remaining.values()) / sum(report.original.values()),
                         "test_accuracy_merged": acc, "test_accuracy": acc0})
        out[f"width_{width}"] = rows
        label = f"width {width}, hidden {hidden}"
        a1.semilogx(tols, [r["complexity"] for r in rows], "o-", label=label)
        a2.semilogx(tols, [r["test_accuracy_merged"] for r in rows], "o-", label=label)
    a1.set_xlabel("tolerance (relative output change)")
    a1.set_ylabel("features left / original")
    a2.set_xlabel("tolerance (relative output change)")
    a2.set_ylabel("test accuracy of merged network")
    fig.legend(*a1.get_legend_handles_labels(), loc="outside lower center", ncol=2, frameon=False)
    fig.savefig(FIGURES / "feature_complexity.png", dpi=110)
    return out


def cuda_figure() -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_cuda_unlearnable import CUDAUnlearnableDigits

    from toolkit_core.data import load_digits

    src = CUDAUnlearnableDigits()
    clean, y = load_digits(16, "train", seed=0).tensors
    poisoned, _ = src.tensors("train")
    first = [int((y == c).nonzero()[0]) for c in range(10)]
    fig, axes = plt.subplots(3, 10, figsize=(10, 3.3), layout="constrained")
    for col, i in enumerate(first):
        for row, img in enumerate((clean[i, 0], poisoned[i, 0])):
            axes[row, col].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[2, col].imshow(src.filters[col], cmap="viridis", vmin=0, vmax=1)
        axes[0, col].set_title(f"class {col}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for row, name in enumerate(("clean", "CUDA", "filter")):
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.savefig(FIGURES / "cuda_unlearnable.png", dpi=110)
    return {"filters": src.filters.tolist()}


def mahalanobis_study() -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_mahalanobis import Mahalanobis

    from toolkit_core.catalog import create
    from toolkit_core.data import load_digits
    from toolkit_core.detection import auroc
    from toolkit_core.models import digits_model

    model = digits_model()
    xtr, ytr = load_digits(16, "train", seed=0).tensors
    xte, yte = load_digits(16, "test", seed=0).tensors
    g = torch.Generator().manual_seed(0)
    abnormal = {
        "uniform noise": torch.rand(xte.shape, generator=g),
        "upside-down digits": xte.flip(2),
        "FGSM eps 0.1": create("fgsm", eps=0.1)(model, xte, yte),
        "PGD-10 eps 0.1": create("pgd", eps=0.1, steps=10)(model, xte, yte),
    }
    variants = {
        "penultimate": Mahalanobis(),
        "ensemble (3 layers)": Mahalanobis(layers=["features.2", "features.5", "relu"]),
        "ensemble + pre-processing (eps 0.01)": Mahalanobis(layers=["features.2", "features.5", "relu"],
                                                            epsilon=0.01),
    }
    out: dict = {}
    for vname, det in variants.items():
        det.fit(model, (xtr, ytr))
        normal = det.score(model, xte)
        out[vname] = {k: auroc(normal, det.score(model, v)) for k, v in abnormal.items()}
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    width = 0.8 / len(variants)
    for i, (vname, row) in enumerate(out.items()):
        ax.bar([j + i * width for j in range(len(abnormal))], list(row.values()), width, label=vname)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(abnormal))], list(abnormal))
    ax.set_ylabel("AUROC (test digits vs abnormal)")
    ax.set_ylim(0.4, 1.0)
    fig.legend(loc="outside lower center", ncol=3, frameon=False, fontsize=8)
    fig.savefig(FIGURES / "mahalanobis.png", dpi=110)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["calibration", "feature_complexity", "cuda_figure", "mahalanobis"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    studies = {"calibration": calibration_study, "feature_complexity": feature_complexity_study,
               "cuda_figure": cuda_figure, "mahalanobis": mahalanobis_study}
    result = studies[args.study]()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
