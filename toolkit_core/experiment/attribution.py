"""Stage ``attribution``: heatmaps of every attribution method (digits and photos), cascading parameter
randomization, input alignment, key-information sufficiency, and faithfulness metrics (deletion/insertion
AUC, region-perturbation AOPC, ROAD MoRF/LeRF, max-sensitivity, sparseness) that rank the methods with
error bars, their maps shown side by side in rank order."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .. import data as tt_data
from .common import datasets, models, names
from .config import instantiate
from .figures import heatmap_grid
from .runner import RunContext, seed_everything


class _Normalized(torch.nn.Module):
    """ImageNet normalization inside the model, so attributions are taken w.r.t. [0, 1] pixels."""

    #: The raw input's range: zB (dtd, lrp composites) takes its bounds from it; the engine folds the
    #: normalization below into the first layer, so the bounds apply to the [0, 1] pixels.
    input_range = (0.0, 1.0)

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


def stage_attribution(ctx: RunContext) -> dict[str, Any]:
    from ..analysis import cascading_randomization, input_alignment, key_information_sufficiency, plots

    cfg = ctx.config
    a = cfg.settings["analysis"]
    specs = cfg.methods["attribution"]
    if not specs:
        return {"summary": "no attribution methods configured", "figures": []}
    methods = {s.label: instantiate(s, "attribution") for s in specs}
    trained = models(ctx)
    model = trained.get("plain", next(iter(trained.values())))
    model_name, data_name = names(ctx)
    _, test = datasets(ctx)
    if hasattr(test, "tensors"):
        x, y = test.tensors[0][: a["samples"]], test.tensors[1][: a["samples"]]
    else:  # the user's data: the first samples of the test split, read one by one
        from ..workloads.data import first_items

        x, y = first_items(test, a["samples"])
    x, y = x.to(ctx.device), y.to(ctx.device)
    out: dict[str, Any] = {"methods": list(methods), "figures": [], "errors": {}}
    advance = ctx.task("attribution", 2 + 3 * len(methods) + (len(methods) if a.get("faithfulness") else 0))

    maps = {}
    for label, m in methods.items():
        try:
            maps[label] = m(model, x, y).detach().cpu()
        except Exception as exc:  # a method that fails is reported, the others still run
            out["errors"][f"{label} on {data_name}"] = f"{type(exc).__name__}: {exc}"
    heatmap_grid(ctx.figure("attribution_digits"), x[:4].cpu(), {k: v[:4] for k, v in maps.items()},
                 f"{model_name} on {data_name}: attribution of the true class (red +, blue -)")
    out["figures"].append("attribution_digits.png")
    advance()
    good = {k: methods[k] for k in maps}

    if a["photos"] and cfg.workload is None:  # the bundled photos go with the default experiment
        photos = tt_data.load_photos(a["photo_size"]).to(ctx.device)
        vgg = photo_model(cfg.seed).to(ctx.device)
        pmaps = {}
        for label, m in good.items():
            try:
                pmaps[label] = m(vgg, photos, None).detach().cpu()
            except Exception as exc:
                out["errors"][f"{label} on VGG-16"] = f"{type(exc).__name__}: {exc}"
        heatmap_grid(ctx.figure("attribution_photos"), photos.cpu(), pmaps,
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
                                title=f"cascading randomization ({model_name}): sign-flip SSIM to the original")
        plots.randomization_grid(r, x.cpu(), sample=0, path=ctx.figure("randomization_grid"), per_row=2,
                                 cell=1.15)
        out["figures"] += ["randomization_ssim.png", "randomization_grid.png"]
    advance(len(good))

    alignment = [dataclasses.replace(input_alignment(model, x, y, method=m), method=label)
                 for label, m in good.items()]
    out[f"input alignment (trained {model_name})"] = {
        label: {"mean cos(A, x)": res.mean} for label, res in zip(good, alignment)}
    plots.alignment_bars(alignment, path=ctx.figure("alignment"), title=f"input alignment, {model_name}")
    out["figures"].append("alignment.png")
    advance(len(good))

    if a["sufficiency"]:
        suff = [dataclasses.replace(key_information_sufficiency(model, x, y, method=m, seed=cfg.seed), method=label)
                for label, m in good.items()]
        out["key-information sufficiency (share of predictions unchanged)"] = {
            label: {f"top {k:g}%": v for k, v in zip(s.ks, s.unchanged)} for label, s in zip(good, suff)}
        plots.sufficiency_curves(suff, path=ctx.figure("sufficiency"), title="keep the top-k% attributed pixels")
        out["figures"].append("sufficiency.png")
    advance(len(good))

    if a.get("faithfulness", False) and good:
        _faithfulness(ctx, model, x, y, good, maps, out)
        advance(len(good))
    top = out.get("randomization: sign-flip SSIM max(SSIM(a,b), SSIM(a,-b)) to the original, top-down", {})
    ssim_top = {k: v[next(iter(v))] for k, v in top.items()}
    best = max(ssim_top, key=lambda k: ssim_top[k] if ssim_top[k] == ssim_top[k] else -1) if ssim_top else None
    out["summary"] = f"{len(good)} method(s)" + (f"; most stable under top-layer randomization: {best}"
                                                 if best else "")
    if out.get("faithfulness ranking"):
        out["summary"] += f"; most faithful (mean rank over the faithfulness metrics): {out['faithfulness ranking'][0]}"
    if cfg.precision != "fp32":  # never silently: the run asked for a lower precision, attribution ignores it
        out["precision"] = "fp32"
        out["summary"] += f"; in float32 (the run's precision {cfg.precision} does not apply to attribution)"
    return out


#: Faithfulness settings of the report (digits, 16x16), full and quick.
FAITHFULNESS = {"steps": 16, "patch_size": 4, "regions": 8, "road_percentages": (10, 30, 50, 70, 90),
                "sensitivity_samples": 4, "radius": 0.05, "baseline": 0.0}
FAITHFULNESS_QUICK = {**FAITHFULNESS, "steps": 8, "regions": 4, "road_percentages": (20, 50, 80),
                      "sensitivity_samples": 2}


def _faithfulness(ctx: RunContext, model, x, y, methods: dict, maps: dict, out: dict[str, Any]) -> None:
    """Every method on the same digits and the same baseline; means ± standard errors, ranks, figures."""
    from ..analysis.faithfulness import DIRECTIONS, evaluate_faithfulness, plot_report

    settings = FAITHFULNESS_QUICK if ctx.config.quick else FAITHFULNESS
    rep = evaluate_faithfulness(model, x, y, methods, seed=ctx.config.seed, **settings)
    arrows = {k: "higher is better" if DIRECTIONS[k] else "lower is better" for k in rep.metrics()}
    out["faithfulness (mean ± standard error over samples; baseline 0)"] = {
        m: {f"{k} ({arrows[k]})": f"{rep.mean(m, k):.4f} ± {rep.sem(m, k):.4f}" for k in rep.metrics()}
        for m in rep.methods}
    ranks = rep.mean_rank()
    order = sorted(rep.methods, key=ranks.get)
    out["faithfulness ranking"] = order
    out["faithfulness mean rank (1 = best)"] = {m: round(ranks[m], 2) for m in order}
    plot_report(rep, ctx.figure("faithfulness"), title="faithfulness on the digits CNN (mean ± s.e.m.)")
    heatmap_grid(ctx.figure("attribution_ranked"), x[:4].cpu(), {f"{i + 1}. {m}": maps[m][:4] for i, m in
                                                                 enumerate(order) if m in maps},
                 "maps side by side, ranked by mean faithfulness rank (1 = most faithful)")
    out["figures"] += ["faithfulness.png", "attribution_ranked.png"]
