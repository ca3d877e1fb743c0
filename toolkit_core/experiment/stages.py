"""The stages of the default experiment. Each takes the RunContext and returns plain data.

* ``train``: a small digits CNN trained plainly and with every configured defense;
* ``robustness``: clean / per-attack / worst-case accuracy of every trained model;
* ``attribution``: heatmaps of every attribution method (digits and photos), cascading parameter
  randomization, input alignment, key-information sufficiency;
* ``generative``: GAN vs GAN-with-prior on the PacGAN ring and grid (modes, quality, reverse KL);
* ``metrics``: every generalization metric on every trained model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import data as tt_data
from ..models import DigitsCNN
from .config import MethodSpec, instantiate
from .runner import RunContext, seed_everything

# --------------------------------------------------------------------------- data and models


def _subset(ds: TensorDataset, n: int, seed: int) -> TensorDataset:
    if not n or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(ds), generator=g)[:n].sort().values
    return TensorDataset(*(t[keep] for t in ds.tensors))


def digits(ctx: RunContext) -> tuple[TensorDataset, TensorDataset]:
    if "digits" not in ctx.data:
        cfg = ctx.config
        size, seed = cfg.get("data", "size"), cfg.seed
        train = _subset(tt_data.load_digits(size, "train", seed=0), cfg.get("data", "train_size"), seed)
        test = _subset(tt_data.load_digits(size, "test", seed=0), cfg.get("data", "test_size"), seed + 1)
        ctx.data["digits"] = (train, test)
    return ctx.data["digits"]


def new_model(ctx: RunContext) -> torch.nn.Module:
    cfg = ctx.config
    seed_everything(cfg.seed)
    return DigitsCNN(size=cfg.get("data", "size"), width=cfg.get("model", "width"),
                     hidden=cfg.get("model", "hidden")).to(ctx.device)


def _defense(ctx: RunContext, spec: MethodSpec):
    """Create a defense; one that takes an attack but names none gets a digits-sized PGD."""
    from ..catalog import get_info

    takes_attack = any(p.name == "attack" for p in get_info(spec.name).parameters)
    if takes_attack and spec.attack is None and "pgd" in _installed("attack"):
        t = ctx.config.settings["train"]
        attack = MethodSpec("pgd", {"eps": t["attack_eps"], "alpha": t["attack_alpha"], "steps": t["attack_steps"]})
        spec = MethodSpec(spec.name, spec.params, spec.line, attack)
    return instantiate(spec, "defense")


def _installed(kind: str) -> list[str]:
    from ..catalog import list_methods

    return list_methods(kind)


def accuracy(model: torch.nn.Module, ds: TensorDataset, device: torch.device) -> float:
    from ..modelstate import preserved

    correct = 0
    with preserved(model, mode=False), torch.no_grad():
        for x, y in DataLoader(ds, batch_size=512):
            correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
    return correct / len(ds)


# --------------------------------------------------------------------------- train


def stage_train(ctx: RunContext) -> dict[str, Any]:
    from ..training import fit, save_atomic

    cfg = ctx.config
    train, test = digits(ctx)
    specs = [MethodSpec("plain")] + list(cfg.methods["defenses"])
    rows, reused = {}, []
    advance = ctx.task("train models", len(specs))
    models_dir = ctx.state / "models"
    models_dir.mkdir(exist_ok=True)
    for spec in specs:
        label = spec.label
        model = new_model(ctx)
        weights = models_dir / f"{_safe(label)}-{cfg.fingerprint('train')}.pt"
        if weights.exists():
            saved = torch.load(weights, map_location=ctx.device, weights_only=False)
            model.load_state_dict(saved["state_dict"])
            rows[label] = saved["row"]
            reused.append(label)
        else:
            defense = None if spec.name == "plain" else _defense(ctx, spec)
            history = fit(model, train, defense=defense, epochs=cfg.get("train", "epochs"),
                          lr=cfg.get("train", "lr"), optimizer=cfg.get("train", "optimizer"),
                          batch_size=cfg.get("data", "batch_size"), seed=cfg.seed, device=ctx.device,
                          checkpoint_dir=ctx.state / "checkpoints" / _safe(label), resume=True, progress=False)
            model.eval()
            row = {"defense": spec.name, "params": spec.to_dict(), "epochs": len(history),
                   "final_loss": history.last.get("loss"), "train_acc": accuracy(model, train, ctx.device),
                   "test_acc": accuracy(model, test, ctx.device), "time_s": sum(history["time_s"])}
            rows[label] = row
            save_atomic({"state_dict": model.state_dict(), "row": row}, weights)
        ctx.models[label] = model.eval()
        advance()
    _plot_training(ctx, rows)
    best = max(rows.values(), key=lambda r: r["test_acc"])
    ctx.data["reused_models"] = reused  # bookkeeping for the runner, not a result
    return {"models": rows, "figures": ["training.png"],
            "summary": f"{len(rows)} model(s); best test accuracy {best['test_acc']:.3f}"}


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:80]


def _plot_training(ctx: RunContext, rows: dict[str, dict]) -> None:
    columns = {"train": [r["train_acc"] for r in rows.values()], "test": [r["test_acc"] for r in rows.values()]}
    _grouped_bars(ctx, "training", list(rows), columns, "clean accuracy", "digits CNN: clean accuracy")


def _grouped_bars(ctx: RunContext, name: str, groups: list[str], columns: dict[str, list[float]], ylabel: str,
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


# --------------------------------------------------------------------------- robustness


def stage_robustness(ctx: RunContext) -> dict[str, Any]:
    from ..robustness import evaluate_robustness

    cfg = ctx.config
    _, test = digits(ctx)
    specs = cfg.methods["attacks"]
    if not specs:
        return {"summary": "no attacks configured", "table": {}}
    loader = DataLoader(test, batch_size=256)
    table = {}
    advance = ctx.task("robustness", len(ctx.models))
    for label, model in ctx.models.items():
        seed_everything(cfg.seed)
        attacks = {s.label: instantiate(s, "attack") for s in specs}
        res = evaluate_robustness(model, loader, attacks=attacks, device=ctx.device)
        table[label] = res.to_dict()
        advance()
    _plot_robustness(ctx, table)
    worst = {k: v["worst_case_accuracy"] for k, v in table.items()}
    best = max(worst, key=lambda k: worst[k] or 0)
    return {"table": table, "attacks": [s.label for s in specs], "figures": ["robustness.png"],
            "summary": f"most robust: {best} (worst-case accuracy {worst[best]:.3f})"}


def robust_columns(entry: dict[str, Any]) -> dict[str, float]:
    """clean, each attack, worst case -> accuracy, from an evaluate_robustness dict."""
    cols = {"clean": entry["clean_accuracy"]}
    cols.update({name: a["accuracy"] for name, a in entry["attacks"].items()})
    cols["worst case"] = entry["worst_case_accuracy"]
    return cols


def _plot_robustness(ctx: RunContext, table: dict[str, dict]) -> None:
    rows = {m: robust_columns(v) for m, v in table.items()}
    columns = {col: [r[col] for r in rows.values()] for col in next(iter(rows.values()))}
    _grouped_bars(ctx, "robustness", list(rows), columns, "accuracy",
                  "digits test set: clean, per-attack and worst-case accuracy")


# --------------------------------------------------------------------------- metrics


def stage_metrics(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    _, test = digits(ctx)
    specs = cfg.methods["metrics"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    directions: dict[str, dict[str, bool]] = {}
    errors: dict[str, str] = {}
    skipped = {}
    for spec in list(specs):
        applies = getattr(instantiate(spec, "metric"), "applies_to", "classifier")
        if applies != "classifier":
            skipped[spec.label] = f"applies to a {applies}, not to the trained classifiers"
    specs = [s for s in specs if s.label not in skipped]
    advance = ctx.task("metrics", len(specs) * len(ctx.models))
    for spec in specs:
        for label, model in ctx.models.items():
            seed_everything(cfg.seed)
            metric = instantiate(spec, "metric")
            directions[spec.label] = dict(metric.higher_is_better)
            try:
                values = metric.compute(model, DataLoader(test, batch_size=256))
            except Exception as exc:  # one metric's failure is reported, the others still run
                errors[f"{spec.label} on {label}"] = f"{type(exc).__name__}: {exc}"
                advance()
                continue
            table.setdefault(spec.label, {})[label] = {k: float(v) for k, v in values.items()}
            advance()
    if table:
        _plot_metrics(ctx, table)
    summary = f"{len(table)} metric(s) x {len(ctx.models)} model(s)" + (f", {len(errors)} error(s)" if errors else "")
    return {"table": table, "higher_is_better": directions, "errors": errors, "skipped": skipped,
            "figures": ["metrics.png"] if table else [], "summary": summary}


def _plot_metrics(ctx: RunContext, table: dict[str, dict[str, dict[str, float]]]) -> None:
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


# --------------------------------------------------------------------------- attribution


class _Normalized(torch.nn.Module):
    """ImageNet normalization inside the model, so attributions are taken w.r.t. [0, 1] pixels."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(tt_data.IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(tt_data.IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def photo_model(seed: int) -> torch.nn.Module:
    """A randomly initialized torchvision VGG-16 (no weights are downloaded), normalization inside."""
    import torchvision

    seed_everything(seed)
    return _Normalized(torchvision.models.vgg16(weights=None)).eval()


def _heatmap_grid(path, x: torch.Tensor, maps: dict[str, torch.Tensor], title: str) -> None:
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


def stage_attribution(ctx: RunContext) -> dict[str, Any]:
    from ..analysis import cascading_randomization, input_alignment, key_information_sufficiency, plots

    cfg = ctx.config
    a = cfg.settings["analysis"]
    specs = cfg.methods["attribution"]
    if not specs:
        return {"summary": "no attribution methods configured", "figures": []}
    methods = {s.label: instantiate(s, "attribution") for s in specs}
    model = ctx.models["plain"]
    _, test = digits(ctx)
    x, y = test.tensors[0][: a["samples"]].to(ctx.device), test.tensors[1][: a["samples"]].to(ctx.device)
    out: dict[str, Any] = {"methods": list(methods), "figures": [], "errors": {}}
    advance = ctx.task("attribution", 2 + 3 * len(methods))

    maps = {}
    for label, m in methods.items():
        try:
            maps[label] = m(model, x, y).detach().cpu()
        except Exception as exc:  # a method that fails is reported, the others still run
            out["errors"][f"{label} on digits"] = f"{type(exc).__name__}: {exc}"
    _heatmap_grid(ctx.figure("attribution_digits"), x[:4].cpu(), {k: v[:4] for k, v in maps.items()},
                  "trained digits CNN: attribution of the true class (red +, blue -)")
    out["figures"].append("attribution_digits.png")
    advance()
    good = {k: methods[k] for k in maps}

    if a["photos"]:
        photos = tt_data.load_photos(a["photo_size"]).to(ctx.device)
        vgg = photo_model(cfg.seed).to(ctx.device)
        pmaps = {}
        for label, m in good.items():
            try:
                pmaps[label] = m(vgg, photos, None).detach().cpu()
            except Exception as exc:
                out["errors"][f"{label} on VGG-16"] = f"{type(exc).__name__}: {exc}"
        _heatmap_grid(ctx.figure("attribution_photos"), photos.cpu(), pmaps,
                      f"randomly initialized VGG-16, {a['photo_size']}px photos: predicted class")
        out["figures"].append("attribution_photos.png")
        align_vgg = {}
        for label, m in good.items():
            if label in pmaps:
                align_vgg[label] = {"input alignment (random VGG-16)": input_alignment(
                    vgg, photos, None, method=m, layerwise=False).mean}
        out["alignment on random VGG-16"] = align_vgg
    advance()

    if a["randomization"] and good:
        r = cascading_randomization(model, x, y, methods=good, order="top_down", seed=cfg.seed, keep_maps=True)
        for metric, title in (("ssim_flip", "sign-flip SSIM max(SSIM(a,b), SSIM(a,-b))"), ("ssim", "SSIM"),
                              ("spearman_abs", "Spearman of |maps|")):
            out[f"randomization: {title} to the original, top-down"] = {
                label: {f"+{b}" if i else b: v for i, (b, v) in enumerate(zip(r.blocks, r.mean(label, metric)))}
                for label in r.methods}
        plots.similarity_curves(r, "ssim_flip", path=ctx.figure("randomization_ssim"),
                                title="cascading randomization (digits CNN): sign-flip SSIM to the original")
        plots.randomization_grid(r, x.cpu(), sample=0, path=ctx.figure("randomization_grid"))
        out["figures"] += ["randomization_ssim.png", "randomization_grid.png"]
    advance(len(good))

    alignment = [input_alignment(model, x, y, method=m) for m in good.values()]
    out["input alignment (trained digits CNN)"] = {
        label: {"mean cos(A, x)": res.mean} for label, res in zip(good, alignment)}
    plots.alignment_bars(alignment, path=ctx.figure("alignment"), title="input alignment, trained digits CNN")
    out["figures"].append("alignment.png")
    advance(len(good))

    if a["sufficiency"]:
        suff = [key_information_sufficiency(model, x, y, method=m, seed=cfg.seed) for m in good.values()]
        out["key-information sufficiency (share of predictions unchanged)"] = {
            label: {f"top {k:g}%": v for k, v in zip(s.ks, s.unchanged)} for label, s in zip(good, suff)}
        plots.sufficiency_curves(suff, path=ctx.figure("sufficiency"), title="keep the top-k% attributed pixels")
        out["figures"].append("sufficiency.png")
    advance(len(good))
    top = out.get("randomization: sign-flip SSIM max(SSIM(a,b), SSIM(a,-b)) to the original, top-down", {})
    ssim_top = {k: v[next(iter(v))] for k, v in top.items()}
    best = max(ssim_top, key=lambda k: ssim_top[k] if ssim_top[k] == ssim_top[k] else -1) if ssim_top else None
    out["summary"] = f"{len(good)} method(s)" + (f"; most stable under top-layer randomization: {best}"
                                                 if best else "")
    return out


# --------------------------------------------------------------------------- generative

#: PacGAN Table 1 (Lin et al. 2018, arXiv:1712.04086): modes / high-quality % / reverse KL.
PACGAN_TABLE1 = {
    "ring": {"GAN": (6.3, 98.2, 0.45), "PacGAN2": (7.9, 95.6, 0.07), "PacGAN4": (7.8, 95.9, 0.07)},
    "grid": {"GAN": (17.3, 94.8, 0.70), "PacGAN2": (23.8, 91.3, 0.13), "PacGAN4": (24.8, 93.6, 0.04)},
}


def stage_generative(ctx: RunContext) -> dict[str, Any]:
    """Plain GAN (gaussian prior) and the same networks with every other prior (pairing on, MMCGAN)."""
    from ..generative import generate, mixture_spec, mode_statistics, train_gan
    from ..models import MLP

    cfg = ctx.config
    g = cfg.settings["generative"]
    specs = cfg.methods["priors"]
    if not specs or not g["mixtures"]:
        return {"summary": "no priors configured", "figures": []}
    runs: dict[str, dict[str, Any]] = {}
    scatter: dict[tuple[str, str], torch.Tensor] = {}
    advance = ctx.task("GANs", len(g["mixtures"]) * len(specs) * g["seeds"])
    for mixture in g["mixtures"]:
        sampler, _, _ = tt_data.TOY_MIXTURES[mixture]
        modes, std = mixture_spec(mixture)
        for spec in specs:
            pair = 0.0 if spec.name == "gaussian" else g["pair_weight"]
            label = f"{mixture} / {spec.label}" + (" (GAN)" if pair == 0 else " (paired)")
            stats = []
            for s in range(g["seeds"]):
                seed = cfg.seed + 1000 * s
                x, _ = sampler(g["train_points"], seed=seed)
                prior = instantiate(spec, "prior")
                seed_everything(seed)
                prior.fit(x)
                h = g["hidden"]
                G = MLP((prior.dim + g["noise_dim"], h, h, 2))
                D = MLP((2, h, h, 1))
                train_gan(G, D, x, prior, epochs=g["epochs"], pair_weight=pair, noise_dim=g["noise_dim"],
                          lr=g["lr"], batch_size=g["batch_size"], seed=seed, progress=False, device=ctx.device,
                          fit_prior=False)
                samples = generate(G.eval(), prior, g["samples"], noise_dim=g["noise_dim"], seed=seed)
                st = mode_statistics(samples, modes, std)
                stats.append({k: float(st[k]) for k in ("modes_captured", "high_quality_fraction", "reverse_kl")})
                if s == 0:
                    scatter[(mixture, label)] = samples
                advance()
            runs[label] = _mean_std(stats, len(modes))
    _plot_gan_scatter(ctx, scatter)
    reference = {f"{m} / {name} (PacGAN Table 1)": {"modes": v[0], "high quality %": v[1], "reverse KL": v[2]}
                 for m in g["mixtures"] for name, v in PACGAN_TABLE1[m].items()}
    all_modes = [k for k, v in runs.items() if v["all modes on every seed"]]
    return {"table": runs, "PacGAN Table 1 (published)": reference, "figures": ["gan_samples.png"],
            "summary": f"{len(runs)} run(s); all modes on every seed: {', '.join(all_modes) or 'none'}"}


def _mean_std(stats: list[dict[str, float]], n_modes: int) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {"seeds": len(stats)}
    for key, name, scale in (("modes_captured", "modes", 1), ("high_quality_fraction", "high quality %", 100),
                             ("reverse_kl", "reverse KL", 1)):
        vals = np.array([s[key] for s in stats]) * scale
        out[name] = float(vals.mean())
        out[f"{name} std"] = float(vals.std())
    out["all modes on every seed"] = all(s["modes_captured"] == n_modes for s in stats)
    out["of modes"] = n_modes
    return out


def _plot_gan_scatter(ctx: RunContext, scatter: dict[tuple[str, str], torch.Tensor]) -> None:
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
