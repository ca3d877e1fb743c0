"""Studies of the seed-pool plugins (issue 18) on the bundled digits; prints numbers, writes figures.

    python benchmarks/seed_pool.py calibration         # reliability diagrams, docs/figures/calibration.png
    python benchmarks/seed_pool.py feature_complexity  # docs/figures/feature_complexity.png
    python benchmarks/seed_pool.py cuda_figure         # docs/figures/cuda_unlearnable.png (clean vs poisoned)
    python benchmarks/seed_pool.py mahalanobis         # AUROC table, docs/figures/mahalanobis.png
    python benchmarks/seed_pool.py accelat             # AccelAT vs PGD-AT at equal epochs, docs/figures/accelat.png
    python benchmarks/seed_pool.py rws                 # accuracy vs coefficient, docs/figures/rws.png
    python benchmarks/seed_pool.py lms                 # the data and the randomization test, docs/figures/lms.png

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


def accelat_study(epochs: int = 20, configs=(("adam", 3e-3), ("adam", 1e-2), ("sgd", 0.05))) -> dict:
    """AccelAT vs PGD-AT at equal epochs (and equal attack, optimizer, initial lr, seed) on the digits.

    The training split is cut into 80% training / 20% validation (AccelAT's schedule reads the
    validation PGD-5 accuracy, also recorded for PGD-AT); both are reported on the test split: clean
    and PGD-10 accuracy (eps 0.1). One column of the figure per (optimizer, initial lr).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_accelat import AccelAT
    from torchtrust_pgd_at import PGDAT

    from toolkit_core.catalog import create
    from toolkit_core.data import load_digits
    from toolkit_core.models import DigitsCNN
    from toolkit_core.training import fit

    x, y = load_digits(16, "train", seed=0).tensors
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_val = len(x) // 5
    val, tr = (x[perm[:n_val]], y[perm[:n_val]]), (x[perm[n_val:]], y[perm[n_val:]])
    xte, yte = load_digits(16, "test", seed=0).tensors
    eps = 0.1
    train_attack = create("pgd", eps=eps, alpha=eps / 4, steps=5)
    test_attack = create("pgd", eps=eps, alpha=eps / 4, steps=10, seed=0)
    out: dict = {"epochs": epochs, "eps": eps}
    fig, axes = plt.subplots(2, len(configs), figsize=(4 * len(configs), 6), layout="constrained", squeeze=False)
    for col, (optimizer, lr) in enumerate(configs):
        res = out[f"{optimizer} lr {lr:g}"] = {}
        for name, defense in (("pgd_at", PGDAT(attack=train_attack)), ("accelat", AccelAT(attack=train_attack))):
            torch.manual_seed(0)
            model = DigitsCNN(size=16, width=8, hidden=32)
            hist = fit(model, tr, defense, epochs=epochs, optimizer=optimizer, lr=lr, batch_size=64, seed=0,
                       eval_data=val, eval_attack=train_attack, progress=False)
            model.eval()
            with torch.no_grad():
                clean = float((model(xte).argmax(1) == yte).float().mean())
            x_adv = test_attack(model, xte, yte)
            with torch.no_grad():
                robust = float((model(x_adv).argmax(1) == yte).float().mean())
            val_adv = hist["eval_adv_acc"]
            res[name] = {"test_clean_acc": clean, "test_pgd10_acc": robust, "val_adv_acc": val_adv,
                         "best_val_adv_acc": max(val_adv), "train_time_s": sum(hist["time_s"]),
                         "lr": hist["lr"] if name == "accelat" else [lr] * epochs}
            axes[0, col].plot(range(1, epochs + 1), val_adv, "o-", ms=3, label=name)
            axes[1, col].semilogy(range(1, epochs + 1), res[name]["lr"], "o-", ms=3, label=name)
        axes[0, col].set_title(f"{optimizer}, initial lr {lr:g}")
        axes[0, col].set_ylabel("validation PGD-5 accuracy")
        axes[1, col].set_ylabel("learning rate")
        axes[1, col].set_xlabel("epoch")
    axes[0, 0].legend(frameon=False)
    fig.savefig(FIGURES / "accelat.png", dpi=110)
    return out


def rws_study(coefficients=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)) -> dict:
    """Robust Weight Signatures on the digits: robust and standard models fine-tuned from one base model,
    the signature patched into another standard model at several coefficients.

    base = digits_model() (8 epochs plain training). From it, 5 more epochs (Adam 1e-3) give: the
    standard model S (plain, seed 1), the target T (plain, seed 2: another standard model of the same
    base), and two robust models (seed 1): R_noise (trained on clean + Gaussian-noise copies, sigma 0.3)
    and R_adv (PGD-AT, PGD-5 eps 0.1). A model trained from scratch with another seed (no shared base)
    is the control target. Robust accuracy: on the noisy test split (sigma 0.3, fixed draw) for
    R_noise's signature, under PGD-10 eps 0.1 (crafted against each patched model) for R_adv's.
    """
    import copy

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_rws import RobustWeightSignature, coefficient_sweep, layer_differences

    from toolkit_core.catalog import create
    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model
    from toolkit_core.training import fit

    xtr, ytr = load_digits(16, "train", seed=0).tensors
    xte, yte = load_digits(16, "test", seed=0).tensors
    base = digits_model()

    def tune(defense, seed, noise=0.0):
        model, x, y = copy.deepcopy(base).train(), xtr, ytr
        if noise:
            g = torch.Generator().manual_seed(seed)
            x = torch.cat([xtr, (xtr + noise * torch.randn(xtr.shape, generator=g)).clamp(0, 1)])
            y = torch.cat([ytr, ytr])
        fit(model, (x, y), defense, epochs=5, lr=1e-3, seed=seed, progress=False)
        return model.eval()

    standard, target = tune(None, 1), tune(None, 2)
    robust = {"noise": tune(None, 1, noise=0.3),
              "adv": tune(create("pgd_at", attack=create("pgd", eps=0.1, alpha=0.025, steps=5)), 1)}
    targets = {"target (same base)": target, "control (from scratch)": digits_model(seed=5)}
    g = torch.Generator().manual_seed(0)
    noisy_test = (xte + 0.3 * torch.randn(xte.shape, generator=g)).clamp(0, 1)
    pgd = create("pgd", eps=0.1, alpha=0.025, steps=10, seed=0)
    perturb = {"noise": lambda m, x, y: noisy_test, "adv": lambda m, x, y: pgd(m, x, y)}
    labels = {"noise": "Gaussian noise sigma 0.3", "adv": "PGD-10 eps 0.1"}
    out: dict = {"coefficients": list(coefficients)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, kind in zip(axes, ("noise", "adv")):
        res = out[kind] = {"layer_differences": layer_differences(robust[kind], standard)}
        for layers in (1, 2, 4):
            patch = RobustWeightSignature(layers=layers).extract(robust[kind], standard)
            res[f"fraction_layers_{layers}"] = patch.fraction(target)
            for tname, tmodel in targets.items():
                rows = coefficient_sweep(patch, tmodel, (xte, yte), coefficients, perturb[kind])
                res[f"layers_{layers} {tname}"] = rows
                if layers == 1:
                    continue
                style = "-" if tname.startswith("target") else ":"
                ax.plot(coefficients, [r["robust_acc"] for r in rows], "o" + style, ms=3,
                        label=f"robust acc, {layers} layers, {tname}")
                if tname.startswith("target"):
                    ax.plot(coefficients, [r["clean_acc"] for r in rows], "s--", ms=3,
                            label=f"clean acc, {layers} layers, {tname}")
        ax.set_title(f"signature of the {labels[kind]} robust model")
        ax.set_xlabel("coefficient c  (theta + c * tau)")
        ax.set_ylabel("test accuracy")
        ax.legend(frameon=False, fontsize=7)
    fig.savefig(FIGURES / "rws.png", dpi=110)
    return out


def lms_study(epochs: int = 30) -> dict:
    """LMS-5 (dim 10): the data (linear coordinate vs one slab coordinate) and the randomization test of
    an MLP 10-100-100-2 trained with SGD (lr 0.1, momentum 0.9, batch 100); docs/figures/lms.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_lms import LMS, randomization_test

    from toolkit_core.training import fit

    src = LMS(dim=10, train_size=4000, test_size=2000)
    (xtr, ytr), (xte, yte) = src.tensors("train"), src.tensors("test")
    torch.manual_seed(0)
    model = src.experiment_model()
    fit(model, (xtr, ytr), None, epochs=epochs, optimizer="sgd", lr=0.1, batch_size=100, seed=0, progress=False)
    model.eval()
    out = randomization_test(model, xte, yte)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
    for c, color in ((0, "tab:blue"), (1, "tab:red")):
        keep = yte == c
        a1.scatter(xte[keep, 0], xte[keep, 1], s=3, color=color, label=f"class {c}")
    a1.set_xlabel("x_0 (linear coordinate)")
    a1.set_ylabel("x_1 (5-slab coordinate)")
    a1.legend(frameon=False, markerscale=4)
    a1.set_title("LMS-5: every coordinate alone separates the classes", fontsize=9)
    names = {"accuracy": "clean", "accuracy_L_randomized": "linear coord.\npermuted",
             "accuracy_S_randomized": "9 slab coords.\npermuted"}
    a2.bar(list(names.values()), [out[k] for k in names], color=["gray", "tab:orange", "tab:green"])
    a2.axhline(0.5, color="k", lw=0.6, ls=":")
    a2.set_ylim(0, 1.05)
    a2.set_ylabel("test accuracy of the MLP")
    a2.set_title("randomization test: the MLP uses the linear coordinate only", fontsize=9)
    fig.savefig(FIGURES / "lms.png", dpi=110)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    studies = ["calibration", "feature_complexity", "cuda_figure", "mahalanobis", "accelat", "rws", "lms"]
    parser.add_argument("study", choices=studies)
    args = parser.parse_args()
    torch.set_num_threads(1)
    studies = {"calibration": calibration_study, "feature_complexity": feature_complexity_study,
               "cuda_figure": cuda_figure, "mahalanobis": mahalanobis_study,
               "accelat": accelat_study, "rws": rws_study, "lms": lms_study}
    result = studies[args.study]()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
