"""Stage ``generalization``: does each metric predict the generalization gap? (Jiang et al. 2019)

The protocol of Jiang et al. 2019 ("Fantastic generalization measures and where to find them",
arXiv:1912.02178), sized to a CPU budget, on the native 8x8 scikit-learn digits:

1. **Models.** ReLU MLPs; the factors of :data:`LEVELS` (width, depth, learning rate, weight decay,
   batch size, dropout, training-set size) with 3 levels each. For each factor, ``bases`` random
   settings of the other factors, each trained at every level of the factor: groups of models that
   differ in that factor only (the granulated coefficient averages over them).
2. **Same training loss.** Every model trains with SGD (momentum 0.9) until its training cross-entropy
   (eval mode, whole training set) is <= ``target_ce``, checked every 50 steps, at most ``max_steps``;
   models that do not reach it are reported and left out (as in Jiang et al.), so the gap does not
   track under-fitting.
3. **Measures.** Every configured classifier metric on (up to ``samples`` of) each model's own
   training images, and two baselines: the parameter count and the inverse squared 10th-percentile
   logit margin ``1 / gamma^2``. Gap = train accuracy - test accuracy.
4. **Correlation.** ``tau_dir``: Kendall's tau of the metric against the gap, the metric's sign flipped
   when higher is better, so a positive value means "ranks the models in the direction it claims".
   ``Psi`` (granulated Kendall coefficient): for each factor the mean ``tau_dir`` over its groups, then
   the mean over factors. 95% percentile-bootstrap intervals: models resampled for tau, each factor's
   groups resampled for Psi.

Every number is computed in this stage; a metric's class can check its paper's claim against them
(:meth:`~toolkit_core.methods.Method.experiment_claims` with ``stage == "generalization"``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import instantiate
from .runner import RunContext, seed_everything

#: Factors and their levels (Jiang et al. vary the same kinds of hyperparameters).
LEVELS: dict[str, tuple] = {
    "width": (32, 64, 128), "depth": (1, 2, 3), "lr": (0.01, 0.03, 0.1), "weight_decay": (0.0, 1e-4, 3e-4),
    "batch_size": (32, 64, 128), "dropout": (0.0, 0.1, 0.25), "train_size": (300, 700, 1347),
}
#: The baselines' directions (lower is better for both, as complexity measures).
BASELINES = {"param_count": "number of trainable parameters (Jiang et al.'s weakest baseline)",
             "inverse_margin": "1 / gamma^2, gamma the 10th-percentile logit margin on the training images"}
SIZE = 8  # native 8x8 digits: 64 inputs


def mlp(width: int, depth: int, dropout: float, d_in: int = SIZE * SIZE, classes: int = 10) -> nn.Sequential:
    """A ReLU MLP with ``depth`` hidden layers of ``width`` units, dropout after each (a plain chain)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


@torch.no_grad()
def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float(F.cross_entropy(model(x), y))


@torch.no_grad()
def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def train_to_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: float, max_steps: int, lr: float,
                weight_decay: float = 0.0, batch: int = 64, seed: int = 0, check_every: int = 50) -> tuple[int, float]:
    """SGD (momentum 0.9) until the training cross-entropy (eval mode, whole set) is <= ``target`` or
    ``max_steps``; returns ``(steps, final cross-entropy)``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    n = len(x)
    perm, pos, step = torch.randperm(n, generator=g), 0, 0
    ce = _ce(model, x, y)
    while step < max_steps and ce > target:
        model.train()
        for _ in range(check_every):
            if pos + batch > n:
                perm, pos = torch.randperm(n, generator=g), 0
            idx = perm[pos:pos + batch]
            pos += batch
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        ce = _ce(model, x, y)
        if not math.isfinite(ce):
            break
    model.eval()
    return step, ce


def design(factors: list[str], bases: int, seed: int = 0) -> list[dict[str, Any]]:
    """For each factor and each of ``bases`` random settings of the others, one model per level of the
    factor: ``[{"hp": {...}, "group": [factor, base]}]``."""
    rng = np.random.default_rng(seed)
    out = []
    for f in factors:
        for b in range(bases):
            base = {o: LEVELS[o][rng.integers(len(LEVELS[o]))] for o in LEVELS}
            out += [{"hp": {**base, f: level}, "group": [f, b]} for level in LEVELS[f]]
    return out


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b of two sequences (0 when either is constant)."""
    from scipy.stats import kendalltau

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    tau = float(kendalltau(a, b).statistic)
    return 0.0 if math.isnan(tau) else tau


def correlate(values: list[float], gaps: list[float], groups: list[list[Any]], sign: float, n_boot: int,
              seed: int = 0) -> dict[str, Any]:
    """``tau_dir``, ``psi`` (granulated), their 95% bootstrap intervals and ``psi`` per factor."""
    v, g = sign * np.asarray(values, dtype=float), np.asarray(gaps, dtype=float)
    ok = np.isfinite(v)
    out: dict[str, Any] = {"n": int(ok.sum())}
    if ok.sum() < 3:
        return {**out, "tau_dir": float("nan"), "tau_ci": [float("nan")] * 2, "psi": float("nan"),
                "psi_ci": [float("nan")] * 2, "psi_per_factor": {}}
    idx = np.flatnonzero(ok)
    out["constant"] = bool(np.ptp(v[idx]) == 0)  # e.g. training accuracy, 1.0 for every model at the target
    out["tau_dir"] = kendall_tau(v[idx], g[idx])
    by_factor: dict[str, list[float]] = {}
    members: dict[tuple, list[int]] = {}
    for i in idx:
        members.setdefault(tuple(groups[i]), []).append(i)
    for (factor, _), m in members.items():
        if len(m) > 1:
            by_factor.setdefault(factor, []).append(kendall_tau(v[m], g[m]))
    per = {f: float(np.mean(t)) for f, t in by_factor.items()}
    out["psi_per_factor"] = per
    out["psi"] = float(np.mean(list(per.values()))) if per else float("nan")
    rng = np.random.default_rng(seed)
    taus = [kendall_tau(v[s], g[s]) for s in (rng.choice(idx, len(idx)) for _ in range(n_boot))]
    psis = []
    for _ in range(n_boot):
        means = [float(np.mean(rng.choice(t, len(t)))) for t in by_factor.values()]
        psis.append(float(np.mean(means)) if means else float("nan"))
    out["tau_ci"] = [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))]
    # an interval needs groups to resample: with one group per factor (bases = 1) there is none
    enough = bool(per) and all(len(t) > 1 for t in by_factor.values())
    out["psi_ci"] = ([float(np.nanpercentile(psis, 2.5)), float(np.nanpercentile(psis, 97.5))]
                     if enough else [float("nan")] * 2)
    return out


def reading(c: dict[str, Any]) -> str:
    """What an interval says: ``predicts the gap`` (tau interval above 0), ``ranks the wrong way``
    (below 0), ``no evidence either way`` (contains 0), or ``constant across the models``."""
    lo, hi = c.get("tau_ci", [float("nan")] * 2)
    if c.get("constant"):
        return "constant across the models"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not measured"
    return "predicts the gap" if lo > 0 else "ranks the wrong way" if hi < 0 else "no evidence either way"


def _margin_p10(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        z = model.eval()(x)
    true = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).max(1).values
    return float(torch.quantile(true - other, 0.1))


def stage_generalization(ctx: RunContext) -> dict[str, Any]:
    """Train the grid of MLPs to the same training loss, measure every metric, correlate with the gap."""
    from ..data import load_digits
    from .figures import plot_gap_correlations

    cfg = ctx.config
    s = cfg.settings["generalization"]
    if cfg.workload is not None:
        return {"summary": "not run: the study trains its own MLPs on the bundled digits, not on a user's data",
                "figures": []}
    xtr_all, ytr_all = load_digits(SIZE, "train").tensors
    xte, yte = load_digits(SIZE, "test").tensors
    metrics, skipped, directions, definitions = {}, {}, {}, {}
    for spec in cfg.methods["metrics"]:
        metric = instantiate(spec, "metric")
        applies = getattr(metric, "applies_to", "classifier")
        if applies != "classifier":
            skipped[spec.label] = f"applies to a {applies}"
            continue
        metrics[spec.label] = spec
        directions[spec.label] = dict(metric.higher_is_better)
        definitions[spec.label] = dict(getattr(metric, "definitions", {}) or {})
    plan = design(list(s["factors"]), s["bases"], seed=cfg.seed)
    advance = ctx.task("generalization models", len(plan))
    rows, errors = [], {}
    for i, item in enumerate(plan):
        hp = item["hp"]
        keep = torch.randperm(len(ytr_all), generator=torch.Generator().manual_seed(cfg.seed + 1))[:hp["train_size"]]
        xtr, ytr = xtr_all[keep], ytr_all[keep]
        seed_everything(cfg.seed + i)
        model = mlp(hp["width"], hp["depth"], hp["dropout"])
        steps, ce = train_to_ce(model, xtr, ytr, target=s["target_ce"], max_steps=s["max_steps"], lr=hp["lr"],
                                weight_decay=hp["weight_decay"], batch=hp["batch_size"], seed=cfg.seed + i)
        tr, te = _acc(model, xtr, ytr), _acc(model, xte, yte)
        data = (xtr[:s["samples"]], ytr[:s["samples"]])
        values: dict[str, float] = {}
        for label, spec in metrics.items():
            seed_everything(cfg.seed)
            try:
                got = instantiate(spec, "metric").compute(model, data)
            except Exception as exc:  # noqa: BLE001 - one metric's failure is reported, the others still run
                errors[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                continue
            values.update({f"{label}.{k}": float(v) for k, v in got.items() if "/" not in k})
        gamma = _margin_p10(model, *data)
        values["baseline.param_count"] = float(sum(p.numel() for p in model.parameters()))
        values["baseline.inverse_margin"] = 1.0 / gamma**2 if gamma > 0 else float("inf")
        rows.append({"hp": hp, "group": item["group"], "train_acc": tr, "test_acc": te, "gap": tr - te,
                     "steps": steps, "train_ce": ce, "reached": bool(ce <= s["target_ce"]), "values": values})
        advance()
    used = [r for r in rows if r["reached"]]
    keys = list(dict.fromkeys(k for r in used for k in r["values"]))
    correlations: dict[str, dict[str, Any]] = {}
    for key in keys:
        label, _, name = key.partition(".")
        higher = False if label == "baseline" else directions.get(label, {}).get(name)
        if higher is None:
            continue  # a key without a declared direction cannot be oriented
        c = correlate([r["values"].get(key, float("nan")) for r in used], [r["gap"] for r in used],
                      [r["group"] for r in used], -1.0 if higher else 1.0, s["bootstrap"], seed=cfg.seed)
        correlations[key] = {"better": "higher" if higher else "lower", **c, "reading": reading(c)}
    if correlations:
        plot_gap_correlations(ctx, correlations)
    gaps = [r["gap"] for r in used]
    best = max(correlations, key=lambda k: correlations[k]["tau_dir"]
               if math.isfinite(correlations[k]["tau_dir"]) else -2, default=None)
    predictors = [k for k, c in correlations.items() if c["reading"] == "predicts the gap"]
    summary = (f"{len(used)} of {len(rows)} models reached training cross-entropy {s['target_ce']}; "
               f"{len(predictors)} of {len(correlations)} measures predict the gap (tau interval above 0)"
               + (f"; best tau_dir: {best} ({correlations[best]['tau_dir']:+.2f})" if best else ""))
    return {"models": rows, "correlations": correlations, "higher_is_better": directions,
            "definitions": {**definitions, "baseline": BASELINES}, "skipped": skipped, "errors": errors,
            "gap range": [min(gaps), max(gaps)] if gaps else [], "factors": list(s["factors"]),
            "figures": ["generalization.png"] if correlations else [], "summary": summary}
