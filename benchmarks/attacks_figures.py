"""Figures for docs/methods/{fgsm,pgd,apgd,fab,square,autoattack}.md, on the digits (16x16) and a small CNN.

* ``docs/figures/attacks_accuracy_vs_eps.png``: test accuracy under FGSM, PGD-20 (L-inf), APGD-CE
  (20 iterations), APGD-T, FAB-T, Square and AutoAttack made of those (reduced budgets) against eps
  (the points of the undefended digits model of
  :func:`toolkit_core.robustness.digits_model`).
* ``docs/figures/attacks_examples.png``: clean digits, adversarial examples of each attack at
  eps = 0.1 and the perturbations, with the predicted classes.

    python benchmarks/attacks_figures.py [--points 450] [--out docs/figures]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=450, help="test points for the accuracy curve")
    parser.add_argument("--out", default="docs/figures")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny model: one thread is fastest on a shared machine

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import toolkit_core as tt
    from toolkit_core.data import load_digits
    from toolkit_core.robustness import digits_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = digits_model()
    x, y = load_digits(16, "test").tensors
    x, y = x[: args.points], y[: args.points]

    def attacks(eps):
        return {
            "FGSM": tt.create("fgsm", eps=eps),
            "PGD-20": tt.create("pgd", eps=eps, alpha=max(eps / 4, 1e-3), steps=20, seed=0),
            "APGD-CE (20 it.)": tt.create("apgd", eps=eps, steps=20, seed=0),
        }

    def ensemble(eps):  # the AutoAttack members and the ensemble, reduced budgets (CPU)
        return {
            "APGD-T (20 it., 3 targets)": tt.create("apgd_t", eps=eps, steps=20, n_target_classes=3, seed=0),
            "FAB-T (10 it., 3 targets)": tt.create("fab", eps=eps, steps=10, n_target_classes=3, seed=0),
            "Square (200 queries)": tt.create("square", eps=eps, n_queries=200, seed=0),
            "AutoAttack (same members)": tt.create("autoattack", eps=eps, seed=0, attacks=[
                ("apgd", {"steps": 20}), ("apgd_t", {"steps": 20, "n_target_classes": 3}),
                ("fab", {"steps": 10, "n_target_classes": 3}), ("square", {"n_queries": 200})]),
        }

    epss = [0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2]
    curves: dict[str, list[float]] = {}
    for eps in epss:
        res = tt.evaluate_robustness(model, (x, y), attacks={**attacks(eps), **ensemble(eps)}, checks=False)
        for k, acc in res.accuracy.items():
            curves.setdefault(k, []).append(acc)
        curves.setdefault("worst case", []).append(res.worst_case_accuracy)
        accs = " ".join(f"{k}={v:.3f}" for k, v in res.accuracy.items())
        print(f"eps={eps:.3f} clean={res.clean_accuracy:.3f} {accs} worst={res.worst_case_accuracy:.3f}")
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    for k, v in curves.items():
        ax.plot(epss, v, marker="o", ms=3, label=k, ls="--" if k == "worst case" else "-")
    ax.set_xlabel("eps (L-inf, pixel range [0, 1])")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"undefended digits CNN, {len(y)} test images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "attacks_accuracy_vs_eps.png")
    plt.close(fig)

    eps, n = 0.1, 6
    xs, ys = x[:n], y[:n]
    rows = {"clean": xs} | {k: a(model, xs, ys) for k, a in attacks(eps).items()}
    fig, axes = plt.subplots(len(rows) * 2 - 1, n, figsize=(n * 1.1, (len(rows) * 2 - 1) * 1.2), dpi=100)
    r = 0
    for k, imgs in rows.items():
        with torch.no_grad():
            pred = model(imgs).argmax(1)
        for j in range(n):
            ax = axes[r, j]
            ax.imshow(imgs[j, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"pred {int(pred[j])}", fontsize=7, color="k" if pred[j] == ys[j] else "r")
            ax.axis("off")
        axes[r, 0].text(-4, 8, k, fontsize=7, ha="right", va="center")
        r += 1
        if k != "clean":
            for j in range(n):
                ax = axes[r, j]
                ax.imshow(imgs[j, 0] - xs[j, 0], cmap="seismic", vmin=-eps, vmax=eps)
                ax.axis("off")
            axes[r, 0].text(-4, 8, "x' - x", fontsize=7, ha="right", va="center")
            r += 1
    fig.suptitle(f"adversarial digits at eps = {eps} (red: misclassified)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "attacks_examples.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
