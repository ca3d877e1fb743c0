"""How well does each registered generalization metric predict the generalization gap?

The protocol of Jiang et al. 2019 (arXiv:1912.02178), sized to a CPU budget, on the digits data:

1. **Models trained to the same training cross-entropy**: ReLU MLPs on the native 8x8 digits, 7 factors
   (width, depth, learning rate, weight decay, batch size, dropout, train-set size) with 3 levels each.
   For each factor, ``bases`` random settings of the other factors, each trained at all 3 levels (groups
   of models that differ only in that factor; ``--quick``: 3 factors, 1 base). Every model trains with
   SGD until its training cross-entropy is <= ``TARGET_CE`` (models that do not get there are reported
   and left out, as in Jiang et al.). Generalization gap = train accuracy - test accuracy. Every
   registered metric is computed on (up to 400 samples of) each model's own training set, plus the
   baselines (parameter count, inverse squared margin; sharpness is a metric); Kendall tau and the
   granulated Kendall coefficient Psi against the gap, with 95% bootstrap intervals.
2. **Invariance enhancement**: a small CNN trained on 300 images with plain cross-entropy, random
   augmentation (``itid_enhance`` with ``k=1``) and worst-of-k enhancement (``k=4``), 5 seeds each:
   test accuracy, gap and test-set invariance.
3. **Maximum-entropy conditions**: 4-layer MLPs with and without shortcut connections and weight decay
   (3 seeds each): test accuracy and the ``maxent`` scores on the test set.

Writes docs/results/generalization.md and docs/figures/generalization_*.png. Run::

    python benchmarks/generalization.py            # full (63 models; ~15 min on 2 shared cores)
    python benchmarks/generalization.py --quick    # under 2 min

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
from toolkit_core.experiment.gap_study import train_to_ce  # the stopping rule of Jiang et al. 2019

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- models and training


class ResMLP(nn.Module):
    """MLP with optional identity shortcuts between equal-width hidden layers."""

    def __init__(self, width: int, depth: int, shortcut: bool, d_in: int = 256, classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.shortcut = shortcut
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.drop(torch.relu(self.inp(x.flatten(1))))
        for b in self.blocks:
            h = h + self.drop(torch.relu(b(h))) if self.shortcut else self.drop(torch.relu(b(h)))
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
    """Jiang et al.'s granulated Kendall coefficient: for each factor, the mean tau(metric, gap) over the groups
    of models that differ only in that factor (``row["group"] = (factor, base)``); Psi is the mean over factors.

    Rows without a ``group`` (a full factorial grid) are grouped by agreement on every other factor."""
    psis = {}
    for f in factors:
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            if "group" in r:
                if r["group"][0] == f:
                    groups.setdefault(tuple(r["group"]), []).append(r)
            else:
                groups.setdefault(tuple(r["hp"][o] for o in factors if o != f), []).append(r)
        taus = [kendall([r["m"][key] for r in g], [r["gap"] for r in g])[0] for g in groups.values() if len(g) > 1]
        psis[f] = float(np.mean(taus)) if taus else float("nan")
    return float(np.nanmean(list(psis.values()))), psis


def bootstrap_ci(rows: list[dict], key: str, factors: tuple[str, ...], sign: float, n_boot: int = 500,
                 seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap intervals of the direction-corrected tau (models resampled with replacement)
    and of Psi (within each factor, its groups resampled with replacement)."""
    rng = np.random.default_rng(seed)
    vals = np.array([sign * r["m"][key] for r in rows])
    gaps = np.array([r["gap"] for r in rows])
    taus = []
    for _ in range(n_boot):
        i = rng.integers(0, len(rows), len(rows))
        taus.append(kendall(vals[i], gaps[i])[0])
    # per factor: the tau of every group, then resample groups
    group_taus: dict[str, list[float]] = {}
    for f in factors:
        groups: dict[tuple, list[int]] = {}
        for j, r in enumerate(rows):
            if r.get("group", (None,))[0] == f:
                groups.setdefault(tuple(r["group"]), []).append(j)
        group_taus[f] = [kendall(vals[g], gaps[g])[0] for g in groups.values() if len(g) > 1]
    psis = []
    for _ in range(n_boot):
        per = [np.mean(rng.choice(t, len(t))) for t in group_taus.values() if t]
        psis.append(float(np.mean(per)) if per else float("nan"))
    return {"tau": (float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))),
            "psi": (float(np.nanpercentile(psis, 2.5)), float(np.nanpercentile(psis, 97.5)))}


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


def _digits_subset(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, ...]:
    """``n`` training digits drawn with ``seed`` (the same ``n`` and seed give the same subset), and the
    whole test split: ``(x_train, y_train, x_test, y_test)``."""
    xtr, ytr = load_digits(size, "train").tensors
    keep = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))[:n]
    return (xtr[keep], ytr[keep], *load_digits(size, "test").tensors)


#: Factors of the grid and their levels (Jiang et al. 2019 vary the same kinds of hyperparameters).
LEVELS: dict[str, tuple] = {
    "width": (32, 64, 128), "depth": (1, 2, 3), "lr": (0.01, 0.03, 0.1), "weight_decay": (0.0, 1e-4, 3e-4),
    "batch_size": (32, 64, 128), "dropout": (0.0, 0.1, 0.25), "train_size": (300, 700, 1347),
}
QUICK_FACTORS = ("width", "lr", "train_size")
TARGET_CE = 0.02  # every model is trained until its training cross-entropy is <= this (Jiang et al.: 0.01)
GRID_SIZE = 8  # native 8x8 digits: 64 inputs, so the whole study fits the CPU budget


def design(factors: tuple[str, ...], bases: int, seed: int = 0) -> list[dict]:
    """Models to train: for every factor ``f`` and each of ``bases`` random settings of the *other* factors,
    one model per level of ``f``. Each such triple is a group of models that differ only in ``f``: the groups
    granulated Psi averages over (a sampled version of Jiang et al.'s full grid, whose size -- 3^7 models --
    does not fit the budget). Returns ``[{"hp": ..., "group": (f, base)}]``."""
    rng = np.random.default_rng(seed)
    out = []
    for f in factors:
        for b in range(bases):
            base = {o: LEVELS[o][rng.integers(len(LEVELS[o]))] for o in LEVELS}
            for level in LEVELS[f]:
                out.append({"hp": {**base, f: level}, "group": (f, b)})
    return out


def baselines(model, hp: dict, m: dict) -> dict[str, float]:
    """Jiang et al.'s reference measures: parameter count and the inverse squared 10th-percentile margin
    (sharpness is the ``sharpness`` metric itself)."""
    gamma = m.get("margin.margin_p10", float("nan"))
    return {"baseline.param_count": float(sum(p.numel() for p in model.parameters())),
            "baseline.inverse_margin": 1.0 / gamma**2 if gamma > 0 else float("inf")}


BASELINE_DIRECTIONS = {"param_count": False, "inverse_margin": False}


def grid_study(quick: bool, log, bases: int | None = None) -> tuple[list[dict], dict[str, float], dict[str, str]]:
    xte, yte = load_digits(GRID_SIZE, "test").tensors
    factors = QUICK_FACTORS if quick else tuple(LEVELS)
    bases = bases or (1 if quick else 3)
    max_steps = 1500 if quick else 4000
    xtr_all, ytr_all = load_digits(GRID_SIZE, "train").tensors
    metrics, skipped = metric_objects(quick, ResMLP(32, 1, False, d_in=GRID_SIZE**2).eval(), (xtr_all, ytr_all))
    for name, why in skipped.items():
        log(f"  skipping metric {name}: {why}")
    cost = {name: 0.0 for name in metrics}
    forward_cost = 0.0
    rows = []
    plan = design(factors, bases)
    for i, item in enumerate(plan):
        hp = item["hp"]
        xtr, ytr, _, _ = _digits_subset(hp["train_size"], seed=1, size=GRID_SIZE)
        torch.manual_seed(i)
        model = ResMLP(hp["width"], hp["depth"], shortcut=False, d_in=GRID_SIZE**2, dropout=hp["dropout"])
        t0 = time.perf_counter()
        steps, ce = train_to_ce(model, xtr, ytr, target=TARGET_CE, max_steps=max_steps, lr=hp["lr"],
                                weight_decay=hp["weight_decay"], batch=hp["batch_size"], seed=i)
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
        values_m.update(baselines(model, hp, values_m))
        rows.append({"hp": hp, "group": item["group"], "train_acc": tr_acc, "test_acc": te_acc,
                     "gap": tr_acc - te_acc, "steps": steps, "train_ce": ce, "reached": ce <= TARGET_CE,
                     "m": values_m})
        log(f"  model {i + 1:3d}/{len(plan)} {item['group'][0]}={hp[item['group'][0]]} {hp}  CE {ce:.3f} in "
            f"{steps} steps, train {tr_acc:.3f} test {te_acc:.3f} gap {tr_acc - te_acc:+.3f} ({t_train:.1f}s)")
    ratios = {name: c / max(forward_cost, 1e-9) for name, c in cost.items()}
    return rows, ratios, skipped


def enhance_study(quick: bool, log) -> list[dict]:
    xtr, ytr, xte, yte = _digits_subset(300, seed=2)
    seeds = range(2 if quick else 5)
    steps = 120 if quick else 300
    itid = create("itid")
    variants = {"no augmentation": None, "random augmentation (k=1)": {"k": 1},
                "worst-of-k (itid_enhance, k=4)": {"k": 4}}
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
    rows = [r for r in rows if r.get("reached", True)]
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


def mean_ci(vals) -> str:
    """Mean and 95% Student-t interval over seeds."""
    from scipy.stats import t as student_t

    vals = list(vals)
    if len(vals) < 2:
        return f"{vals[0]:.3f}"
    m, sd = statistics.mean(vals), statistics.stdev(vals)
    h = float(student_t.ppf(0.975, len(vals) - 1)) * sd / math.sqrt(len(vals))
    return f"{m:.3f} [{m - h:.3f}, {m + h:.3f}]"


def direction(key: str) -> bool:
    """True when higher values of metric key ``name.k`` are claimed to mean better generalization."""
    name, k = key.split(".", 1)
    if name == "baseline":
        return BASELINE_DIRECTIONS[k]
    return get_info(name).cls.higher_is_better[k]


def correlation_table(grid: list[dict], factors: tuple[str, ...], n_boot: int = 500) -> list[dict]:
    """Per metric key: tau (raw), direction-corrected tau and Psi, their bootstrap intervals, psi per factor."""
    gaps = [r["gap"] for r in grid]
    out = []
    for key in grid[0]["m"]:
        hib = direction(key)
        sign = -1.0 if hib else 1.0
        vals = [r["m"][key] for r in grid]
        row = {"key": key, "higher_is_better": hib, "finite": all(math.isfinite(v) for v in vals)}
        if row["finite"]:
            tau, p = kendall(vals, gaps)
            oriented = [dict(r, m={key: sign * r["m"][key]}) for r in grid]
            psi, per = granulated_psi(oriented, key, factors)
            ci = bootstrap_ci(grid, key, factors, sign, n_boot=n_boot)
            row.update(tau=tau, p=p, tau_dir=sign * tau, psi=psi, per=per, ci=ci)
        out.append(row)
    return out


def write_report(path: Path, args, grid_all, ratios, skipped, enh, mx, figs, fig_enh, elapsed) -> None:
    elapsed, cpu = elapsed
    grid = [r for r in grid_all if r["reached"]]
    factors = tuple(dict.fromkeys(r["group"][0] for r in grid_all))
    gaps = [r["gap"] for r in grid]
    table = correlation_table(grid, factors)
    lines = [
        "# Generalization metrics vs the generalization gap (digits)",
        "",
        f"Generated by `python benchmarks/generalization.py{' --quick' if args.quick else ''}` in "
        f"{elapsed / 60:.1f} min wall, {cpu / 60:.1f} min of CPU time in this process (CPU only, no GPU; one torch "
        f"thread on a shared, heavily loaded 2-core machine, so wall time is inflated; torch "
        f"{torch.__version__}, Python {platform.python_version()}). Protocol: Jiang et al. 2019 "
        "(arXiv:1912.02178), sized to the CPU budget as described; numbers are reported as measured, whatever "
        "they show.",
        "",
        "## 1. Models trained to the same training cross-entropy; rank correlation with the gap",
        "",
        "ReLU MLPs on the native 8x8 digits (64 inputs; 1,347 train / 450 test images). Factors and levels: "
        + ", ".join(f"{f} ∈ {list(LEVELS[f])}" for f in factors)
        + ". Every model is trained with SGD (momentum 0.9) **until its training cross-entropy (eval mode, whole "
        f"training set) is <= {TARGET_CE}** (Jiang et al. stop at 0.01; {TARGET_CE} keeps the budget), checked "
        f"every 50 steps, at most {1500 if args.quick else 4000} steps. "
        f"{len(grid)} of {len(grid_all)} models reached the target and enter the statistics (Jiang et al. also "
        "discard models that do not). Design: for each factor, "
        f"{len({r['group'] for r in grid_all}) // max(len(factors), 1)} random settings of the other factors, "
        "each trained at every level of the factor: groups of 3 models that differ only in that factor, which is "
        "what the granulated coefficient averages over (the full 3^7 grid does not fit the CPU budget). "
        f"Gap = train acc - test acc: min {min(gaps):+.3f}, median {statistics.median(gaps):+.3f}, max "
        f"{max(gaps):+.3f}. Metrics are computed on (up to 400 of) each model's own training images.",
        "",
        "`tau_dir` is Kendall's tau of the metric against the gap with the sign flipped for metrics where higher "
        "is better, so **positive means the metric ranks models in the direction it claims**; `Psi` is the "
        "granulated Kendall coefficient (per factor: the mean direction-corrected tau over that factor's "
        "groups; then the mean over factors). Brackets: 95% bootstrap intervals (500 resamples of the models "
        "for tau, of each factor's groups for Psi). An interval that contains 0 means no evidence either way. "
        "Rows marked *baseline* are Jiang et al.'s reference measures: parameter count, the inverse squared "
        "10th-percentile margin `1/gamma^2`, and the magnitude-aware sharpness (`sharpness.*`).",
        "",
        "| metric key | better | tau_dir [95% CI] | p | Psi [95% CI] | " + " | ".join(f"psi[{f}]" for f in factors)
        + " |",
        "|---|---|---|---:|---|" + "---:|" * len(factors),
    ]
    summary = []
    for row in table:
        key, better = row["key"], "higher" if row["higher_is_better"] else "lower"
        mark = " *baseline*" if key.startswith(("baseline.", "sharpness.")) else ""
        if not row["finite"]:
            lines.append(f"| `{key}`{mark} | {better} | non-finite values | | | " + "| " * len(factors))
            continue
        ci = row["ci"]
        summary.append((row["tau_dir"], key))
        lines.append(
            f"| `{key}`{mark} | {better} | {row['tau_dir']:+.3f} [{ci['tau'][0]:+.2f}, {ci['tau'][1]:+.2f}] | "
            f"{row['p']:.2g} | {row['psi']:+.3f} [{ci['psi'][0]:+.2f}, {ci['psi'][1]:+.2f}] | "
            + " | ".join(f"{row['per'][f]:+.2f}" for f in factors) + " |"
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
        "Scatter plots (red: smallest training set, blue: the others):",
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
        "Same budget for every variant: the same steps, batch and learning rate (worst-of-k spends k extra "
        "forward passes per batch choosing the transform). Mean and 95% Student-t interval over seeds.",
        "",
        "| variant | test acc | gap | inv_hard (test) | inv_soft (test) |",
        "|---|---:|---:|---:|---:|",
    ]
    for v in dict.fromkeys(r["variant"] for r in enh):
        rs = [r for r in enh if r["variant"] == v]
        lines.append(f"| {v} | {mean_ci(r['test_acc'] for r in rs)} | {mean_ci(r['gap'] for r in rs)} | "
                     f"{mean_ci(r['inv_hard'] for r in rs)} | {mean_ci(r['inv_soft'] for r in rs)} |")
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


def run(quick: bool = False, out: Path | None = None, figures: Path | None = None, verbose: bool = True,
        bases: int | None = None) -> dict:
    """Run the three studies; write the markdown report and figures; return the raw results."""
    log = print if verbose else (lambda *a, **k: None)
    out = out or ROOT / "docs" / "results" / "generalization.md"
    figures = figures or ROOT / "docs" / "figures"
    out.parent.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    log("[1/3] grid of models")
    grid, ratios, skipped = grid_study(quick, log, bases)
    log("[2/3] itid_enhance")
    enh = enhance_study(quick, log)
    log("[3/3] shortcut / weight decay and maxent")
    mx = maxent_study(quick, log)
    figs = scatter_figures(grid, figures)
    fig_enh = enhance_figure(enh, figures)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    write_report(out, argparse.Namespace(quick=quick), grid, ratios, skipped, enh, mx, figs, fig_enh, (elapsed, cpu))
    log(f"wrote {out} and {len(figs) + 1} figures in {elapsed:.0f} s wall, {cpu:.0f} s CPU")
    result = {"grid": grid, "cost_ratios": ratios, "enhance": enh, "maxent": mx, "seconds": elapsed,
              "cpu_seconds": cpu, "quick": quick}
    import json

    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="9 models (3 factors), 2 seeds, fewer steps (< 2 min)")
    ap.add_argument("--out", type=Path, default=None, help="markdown report (default docs/results/generalization.md)")
    ap.add_argument("--figures", type=Path, default=None, help="figure directory (default docs/figures)")
    ap.add_argument("--bases", type=int, default=None,
                    help="random settings of the other factors per factor (default 3; quick 1): 7 x 3 x bases models")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run(args.quick, args.out, args.figures, bases=args.bases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
