"""How well does each registered generalization metric predict the generalization gap?

The protocol of METHODS.md section 4 on the digits data (16x16, 1,347 train / 450 test images):

1. **Grid**: 2^6 = 64 small ReLU MLPs (``--quick``: 16), varying width, depth, learning rate, weight
   decay, train-set size and augmentation, each trained for a fixed number of SGD steps on CPU.
   Generalization gap = train accuracy - test accuracy. Every registered metric is computed on (up to
   400 samples of) each model's own training set -- only training data, as in Jiang et al. 2019 --
   and every aggregate key is correlated with the gap: Kendall tau (``scipy.stats.kendalltau``) and
   the granulated Kendall coefficient Psi (mean over hyperparameters of the tau within groups that
   differ only in that hyperparameter).
2. **Invariance enhancement**: a small CNN trained on 300 images with plain cross-entropy, random
   augmentation (``itid_enhance`` with ``k=1``) and worst-of-k enhancement (``k=4``), 5 seeds each:
   test accuracy, gap and test-set invariance.
3. **Maximum-entropy conditions**: 4-layer MLPs with and without shortcut connections and weight decay
   (3 seeds each): test accuracy and the ``maxent`` scores on the test set.

Writes docs/results/generalization.md and docs/figures/generalization_*.png. Run::

    python benchmarks/generalization.py            # full (~10 min on 2 shared cores)
    python benchmarks/generalization.py --quick    # ~1 min

The timings line reports the measurement cost of each metric as a ratio to one plain forward pass over
the same data, measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau
from torch import nn

from toolkit_core.catalog import create, get_info, list_methods
from toolkit_core.data import load_digits

ROOT = Path(__file__).resolve().parents[1]
FACTORS = ("width", "depth", "lr", "weight_decay", "train_size", "augment")


# --------------------------------------------------------------------------- models and training


class ResMLP(nn.Module):
    """MLP with optional identity shortcuts between equal-width hidden layers."""

    def __init__(self, width: int, depth: int, shortcut: bool, d_in: int = 256, classes: int = 10):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.shortcut = shortcut
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = torch.relu(self.inp(x.flatten(1)))
        for b in self.blocks:
            h = h + torch.relu(b(h)) if self.shortcut else torch.relu(b(h))
        return self.head(h)


class SmallCNN(nn.Module):
    def __init__(self, width: int = 8, hidden: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc = nn.Linear(2 * width * 16, hidden)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        h = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = F.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.head(torch.relu(self.fc(h.flatten(1))))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    from torchtrust_itid import transforms as T

    return T.apply(x, T.sample(len(x), gen, max_translate=1, max_rotate=10, noise=0.02), gen)


def train(model, x, y, *, steps, lr, weight_decay=0.0, aug=False, defense=None, seed=0, batch=64):
    """Plain SGD (momentum 0.9) for a fixed number of steps; ``defense.loss`` when given (as in fit)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    model.train()
    n = len(x)
    perm, pos = torch.randperm(n, generator=g), 0
    for _ in range(steps):
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos : pos + batch]
        pos += batch
        xb, yb = x[idx], y[idx]
        if aug:
            xb = augment(xb, g)
        loss = defense.loss(model, xb, yb)[0] if defense is not None else F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


# --------------------------------------------------------------------------- correlation measures


def kendall(a, b) -> tuple[float, float]:
    res = kendalltau(a, b)
    tau, p = float(res.statistic), float(res.pvalue)
    return (0.0 if math.isnan(tau) else tau), (1.0 if math.isnan(p) else p)


def granulated_psi(rows: list[dict], key: str, factors: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Jiang et al.'s granulated Kendall: for each factor, the mean tau(metric, gap) over groups of
    models that agree on every other factor; Psi is the mean over factors."""
    psis = {}
    for f in factors:
        others = [o for o in factors if o != f]
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault(tuple(r["hp"][o] for o in others), []).append(r)
        taus = [kendall([r["m"][key] for r in g], [r["gap"] for r in g])[0] for g in groups.values() if len(g) > 1]
        psis[f] = float(np.mean(taus)) if taus else float("nan")
    return float(np.nanmean(list(psis.values()))), psis


# --------------------------------------------------------------------------- the three studies


def metric_objects(quick: bool, model, data) -> tuple[dict, dict[str, str]]:
    """Every registered metric that applies to an image classifier (probed on ``model``), with
    benchmark settings for the slow ones; and the skipped ones with the reason."""
    settings = {"sharpness": {"steps": 6 if quick else 8, "samples": 2 if quick else 4},
                "maxent": {"probe_steps": 50 if quick else 100}}
    kept, skipped = {}, {}
    for name in list_methods("metric"):
        metric = create(name, **settings.get(name, {}))
        try:
            metric.compute(model, (data[0][:64], data[1][:64]))
        except Exception as exc:  # e.g. the GAN mode-coverage metrics expect 2-D generated samples
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            continue
        kept[name] = metric
    return kept, skipped


def _digits_subset(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``n`` training digits drawn with ``seed`` (the same ``n`` and seed give the same subset), and the
    whole test split: ``(x_train, y_train, x_test, y_test)``."""
    xtr, ytr = load_digits(16, "train").tensors
    keep = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))[:n]
    return (xtr[keep], ytr[keep], *load_digits(16, "test").tensors)


def grid_study(quick: bool, log) -> tuple[list[dict], dict[str, float], dict[str, str]]:
    xtr_all, ytr_all = load_digits(16, "train").tensors
    xte, yte = load_digits(16, "test").tensors
    levels = {
        "width": (32, 128), "depth": (1, 3), "lr": (0.01, 0.1), "weight_decay": (0.0, 1e-3),
        "train_size": (200, len(ytr_all)), "augment": (False, True),
    }
    if quick:  # 16 models: keep four factors, fix depth and augmentation
        levels["depth"], levels["augment"] = (1,), (False,)
    steps = 150 if quick else 400
    metrics, skipped = metric_objects(quick, ResMLP(32, 1, False).eval(), (xtr_all, ytr_all))
    for name, why in skipped.items():
        log(f"  skipping metric {name}: {why}")
    cost = {name: 0.0 for name in metrics}
    forward_cost = 0.0
    rows = []
    combos = list(itertools.product(*(levels[f] for f in FACTORS)))
    for i, values in enumerate(combos):
        hp = dict(zip(FACTORS, values))
        torch.manual_seed(i)
        xtr, ytr, _, _ = _digits_subset(hp["train_size"], seed=1)
        model = ResMLP(hp["width"], hp["depth"], shortcut=False)
        t0 = time.perf_counter()
        train(model, xtr, ytr, steps=steps, lr=hp["lr"], weight_decay=hp["weight_decay"], aug=hp["augment"], seed=i)
        t_train = time.perf_counter() - t0
        tr_acc, te_acc = accuracy(model, xtr, ytr), accuracy(model, xte, yte)
        data = (xtr[:400], ytr[:400])
        t0 = time.perf_counter()
        with torch.no_grad():
            model(data[0])
        forward_cost += time.perf_counter() - t0
        values_m = {}
        for name, metric in metrics.items():
            t0 = time.perf_counter()
            for k, v in metric.compute(model, data).items():
                if "/" not in k:
                    values_m[f"{name}.{k}"] = v
            cost[name] += time.perf_counter() - t0
        rows.append({"hp": hp, "train_acc": tr_acc, "test_acc": te_acc, "gap": tr_acc - te_acc, "m": values_m})
        log(f"  model {i + 1:2d}/{len(combos)} {hp}  train {tr_acc:.3f} test {te_acc:.3f} "
            f"gap {tr_acc - te_acc:+.3f}  ({t_train:.1f}s train)")
    ratios = {name: c / max(forward_cost, 1e-9) for name, c in cost.items()}
    return rows, ratios, skipped


def enhance_study(quick: bool, log) -> list[dict]:
    xtr, ytr, xte, yte = _digits_subset(300, seed=2)
    seeds = range(2 if quick else 5)
    steps = 120 if quick else 300
    itid = create("itid")
    variants = {"plain": None, "random aug (k=1)": {"k": 1}, "itid_enhance (k=4)": {"k": 4}}
    rows = []
    for label, params in variants.items():
        for s in seeds:
            torch.manual_seed(100 + s)
            model = SmallCNN()
            defense = create("itid_enhance", seed=s, **params) if params is not None else None
            train(model, xtr, ytr, steps=steps, lr=0.05, defense=defense, seed=100 + s)
            tr, te = accuracy(model, xtr, ytr), accuracy(model, xte, yte)
            inv = itid.compute(model, (xte, yte))
            rows.append({"variant": label, "seed": s, "train_acc": tr, "test_acc": te, "gap": tr - te,
                         "inv_hard": inv["inv_hard"], "inv_soft": inv["inv_soft"]})
            log(f"  {label:20s} seed {s}: test {te:.3f} gap {tr - te:+.3f} inv_hard(test) {inv['inv_hard']:.3f}")
    return rows


def maxent_study(quick: bool, log) -> list[dict]:
    xtr, ytr, xte, yte = _digits_subset(500, seed=3)
    seeds = range(1 if quick else 3)
    steps = 150 if quick else 400
    maxent = create("maxent")
    rows = []
    for shortcut, wd in itertools.product((False, True), (0.0, 5e-3)):
        for s in seeds:
            torch.manual_seed(200 + s)
            model = ResMLP(64, 4, shortcut)
            train(model, xtr, ytr, steps=steps, lr=0.05, weight_decay=wd, seed=200 + s)
            tr, te = accuracy(model, xtr, ytr), accuracy(model, xte, yte)
            m = maxent.compute(model, (xte, yte))
            rows.append({"shortcut": shortcut, "weight_decay": wd, "seed": s, "train_acc": tr, "test_acc": te,
                         "gap": tr - te, **{k: v for k, v in m.items() if "/" not in k}})
            log(f"  shortcut={shortcut!s:5} wd={wd:g} seed {s}: test {te:.3f} gap {tr - te:+.3f} "
                f"suff_gap {m['sufficiency_gap']:+.3f} red {m['redundancy_global']:.2f}/{m['redundancy_within']:.2f}")
    return rows


# --------------------------------------------------------------------------- report


def scatter_figures(rows, fig_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k.split(".")[0] for k in rows[0]["m"]})
    gap = np.array([r["gap"] for r in rows])
    size = np.array([r["hp"]["train_size"] for r in rows])
    files = []
    for name in names:
        keys = [k for k in rows[0]["m"] if k.split(".")[0] == name]
        cols = min(3, len(keys))
        nrow = math.ceil(len(keys) / cols)
        fig, axes = plt.subplots(nrow, cols, figsize=(3.2 * cols, 2.6 * nrow), squeeze=False)
        for ax, key in zip(axes.flat, keys):
            vals = np.array([r["m"][key] for r in rows])
            small = size == size.min()
            ax.scatter(vals[small], gap[small], s=12, c="tab:red", label=f"n={size.min()}")
            ax.scatter(vals[~small], gap[~small], s=12, c="tab:blue", label=f"n={size.max()}")
            tau = kendall(vals, gap)[0]
            ax.set_title(f"{key.split('.', 1)[1]}  (tau={tau:+.2f})", fontsize=8)
            ax.set_ylabel("gap", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=6)
        fig.suptitle(f"{name} vs generalization gap ({len(rows)} digits MLPs)", fontsize=9)
        fig.tight_layout()
        path = fig_dir / f"generalization_{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path.name)
    return files


def enhance_figure(rows, fig_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
    for ax, key in zip(axes, ("test_acc", "gap", "inv_hard")):
        for i, v in enumerate(variants):
            vals = [r[key] for r in rows if r["variant"] == v]
            ax.scatter([i] * len(vals), vals, s=14)
            ax.plot([i - 0.2, i + 0.2], [np.mean(vals)] * 2, c="k")
        ax.set_xticks(range(len(variants)), [v.split(" ")[0] + ("\n" + v.split(" ", 1)[1] if " " in v else "")
                                             for v in variants], fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("itid_enhance on digits (300 training images, small CNN)", fontsize=9)
    fig.tight_layout()
    path = fig_dir / "generalization_itid_enhance.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


def mean_sd(vals) -> str:
    vals = list(vals)
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"


def write_report(path: Path, args, grid, ratios, skipped, enh, mx, figs, fig_enh, elapsed) -> None:
    elapsed, cpu = elapsed
    factors = [f for f in FACTORS if len({r["hp"][f] for r in grid}) > 1]
    keys = list(grid[0]["m"])
    gaps = [r["gap"] for r in grid]
    lines = [
        "# Generalization metrics vs the generalization gap (digits)",
        "",
        f"Generated by `python benchmarks/generalization.py{' --quick' if args.quick else ''}` in "
        f"{elapsed / 60:.1f} min wall, {cpu / 60:.1f} min of CPU time in this process (CPU only, no GPU; one torch "
        f"thread on a shared, heavily loaded 2-core machine, so wall time is inflated; torch "
        f"{torch.__version__}, Python {platform.python_version()}). Protocol: METHODS.md section 4; "
        "numbers are reported as measured, whatever they show.",
        "",
        "## 1. Grid of models and rank correlation with the gap",
        "",
        f"{len(grid)} ReLU MLPs on 16x16 digits, factors: "
        + ", ".join(f"{f} ∈ {sorted({r['hp'][f] for r in grid}, key=str)}" for f in FACTORS)
        + f". SGD with momentum 0.9, batch 64, {150 if args.quick else 400} steps. Gap = train acc - test acc: "
        f"min {min(gaps):+.3f}, median {statistics.median(gaps):+.3f}, max {max(gaps):+.3f}. "
        "Metrics are computed on (up to 400 of) each model's own training images.",
        "",
        "`tau` is Kendall's tau of the raw metric value against the gap (scipy.stats.kendalltau) with its "
        "p-value; `tau_dir` flips the sign for metrics where higher is better, so **positive `tau_dir` "
        "means the metric ranks models in the direction it claims** (a worse score goes with a larger gap). "
        "`Psi` is the granulated Kendall coefficient (Jiang et al. 2019, arXiv:1912.02178): for each factor, "
        "the mean direction-corrected tau over the groups of models that differ only in that factor, then "
        "averaged over factors.",
        "",
        "Every registered metric that applies to a classifier is included (list below the table).",
        "",
        "| metric key | better | tau | p | tau_dir | Psi | " + " | ".join(f"psi[{f}]" for f in factors) + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(factors),
    ]
    summary = []
    for key in keys:
        name, k = key.split(".", 1)
        hib = get_info(name).cls.higher_is_better[k]
        sign = -1 if hib else 1
        vals = [r["m"][key] for r in grid]
        if not all(math.isfinite(v) for v in vals):
            better = "higher" if hib else "lower"
            lines.append(f"| `{key}` | {better} | non-finite values | | | | " + "| " * len(factors))
            continue
        tau, p = kendall(vals, gaps)
        oriented = [dict(r, m={key: sign * r["m"][key]}) for r in grid]
        psi, per = granulated_psi(oriented, key, tuple(factors))
        summary.append((sign * tau, key))
        lines.append(
            f"| `{key}` | {'higher' if hib else 'lower'} | {tau:+.3f} | {p:.3g} | {sign * tau:+.3f} | {psi:+.3f} | "
            + " | ".join(f"{per[f]:+.2f}" for f in factors) + " |"
        )
    summary.sort(reverse=True)
    lines += [
        "",
        "Best by `tau_dir`: " + ", ".join(f"`{k}` ({t:+.2f})" for t, k in summary[:5])
        + ". Worst: " + ", ".join(f"`{k}` ({t:+.2f})" for t, k in summary[-3:]) + ".",
        "",
        "Cost of each metric per model, as a ratio to one plain forward pass over the same data (same run): "
        + ", ".join(f"{n} {r:.0f}x" for n, r in sorted(ratios.items(), key=lambda kv: kv[1])) + ".",
        "",
        "Registered metrics that do not apply to classifiers were skipped: "
        + (", ".join(f"`{n}` ({why})" for n, why in skipped.items()) or "none") + ".",
        "",
        "Scatter plots (red: small training set, blue: full training set):",
        "",
    ]
    lines += [f"![{f}](../figures/{f})" for f in figs]
    lines += [
        "",
        "## 2. Invariance enhancement (`itid_enhance`)",
        "",
        f"Small CNN (2 conv + 2 linear), 300 training images, SGD lr 0.05, {120 if args.quick else 300} steps, "
        f"{len({r['seed'] for r in enh})} seeds per variant. `inv_hard` is the `itid` hard invariance on the test "
        "set (default transforms).",
        "",
        "| variant | test acc | gap | inv_hard (test) | inv_soft (test) |",
        "|---|---:|---:|---:|---:|",
    ]
    for v in dict.fromkeys(r["variant"] for r in enh):
        rs = [r for r in enh if r["variant"] == v]
        lines.append(f"| {v} | {mean_sd(r['test_acc'] for r in rs)} | {mean_sd(r['gap'] for r in rs)} | "
                     f"{mean_sd(r['inv_hard'] for r in rs)} | {mean_sd(r['inv_soft'] for r in rs)} |")
    lines += ["", f"![itid_enhance](../figures/{fig_enh})", "",
              "## 3. Shortcut connections, weight decay and the maximum-entropy feature conditions", "",
              f"4-layer MLPs (width 64), 500 training images, SGD lr 0.05, {150 if args.quick else 400} steps, "
              f"{len({r['seed'] for r in mx})} seed(s) per cell; `maxent` on the 450 test images (probe fitted on "
              "one half, evaluated on the other).", "",
              "| shortcut | weight decay | test acc | gap | sufficiency gap | redundancy global | redundancy within |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for sc, wd in itertools.product((False, True), (0.0, 5e-3)):
        rs = [r for r in mx if r["shortcut"] == sc and r["weight_decay"] == wd]
        lines.append(f"| {'yes' if sc else 'no'} | {wd:g} | {mean_sd(r['test_acc'] for r in rs)} | "
                     f"{mean_sd(r['gap'] for r in rs)} | {mean_sd(r['sufficiency_gap'] for r in rs)} | "
                     f"{mean_sd(r['redundancy_global'] for r in rs)} | {mean_sd(r['redundancy_within'] for r in rs)} |")
    lines.append("")
    path.write_text("\n".join(lines) + "\n")


def run(quick: bool = False, out: Path | None = None, figures: Path | None = None, verbose: bool = True) -> dict:
    """Run the three studies; write the markdown report and figures; return the raw results."""
    log = print if verbose else (lambda *a, **k: None)
    out = out or ROOT / "docs" / "results" / "generalization.md"
    figures = figures or ROOT / "docs" / "figures"
    out.parent.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    log("[1/3] grid of models")
    grid, ratios, skipped = grid_study(quick, log)
    log("[2/3] itid_enhance")
    enh = enhance_study(quick, log)
    log("[3/3] shortcut / weight decay and maxent")
    mx = maxent_study(quick, log)
    figs = scatter_figures(grid, figures)
    fig_enh = enhance_figure(enh, figures)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    write_report(out, argparse.Namespace(quick=quick), grid, ratios, skipped, enh, mx, figs, fig_enh, (elapsed, cpu))
    log(f"wrote {out} and {len(figs) + 1} figures in {elapsed:.0f} s wall, {cpu:.0f} s CPU")
    return {"grid": grid, "cost_ratios": ratios, "enhance": enh, "maxent": mx, "seconds": elapsed, "cpu_seconds": cpu}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 models, 2 seeds, fewer steps (~1 min)")
    ap.add_argument("--out", type=Path, default=None, help="markdown report (default docs/results/generalization.md)")
    ap.add_argument("--figures", type=Path, default=None, help="figure directory (default docs/figures)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run(args.quick, args.out, args.figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
