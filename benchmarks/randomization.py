"""Reproduce the seed paper's analysis claims: cascading randomization, input alignment, rank-one
collapse, key-information sufficiency -- on (a) a small CNN trained on the digits in this script and
(b) a randomly initialized VGG-16 (weights=None) on scikit-image's photos.

    python benchmarks/randomization.py            # full: 8 methods, VGG-16 at 112x112 (~5 min CPU time)
    python benchmarks/randomization.py --quick    # 4 methods, VGG-16 at 48x48, 2 blocks (~1 min CPU time)

Writes docs/figures/analysis_*.png and docs/results/analysis.json (``--fig-dir`` / ``--json`` to
change), and prints the tables. Timings are printed as ratios to the plain gradient measured in the
same run. Methods whose plugin is not installed are skipped (and listed in the JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit_core import list_methods  # noqa: E402
from toolkit_core.analysis import (  # noqa: E402
    cascading_randomization,
    cosine_similarity_convergence,
    input_alignment,
    key_information_sufficiency,
    plots,  # noqa: E402
)
from toolkit_core.data import load_digits, load_photos  # noqa: E402
from toolkit_core.models import digits_model  # noqa: E402

#: label -> method spec (name, or (name, params)); LRP z+ is the lrp method with the z+ rule everywhere
ALL_METHODS = {
    "gradient": "gradient",
    "input_x_gradient": "input_x_gradient",
    "deconvnet": "deconvnet",
    "gbp": "gbp",
    "rectgrad": "rectgrad",
    "lrp_zplus": ("lrp", {"rule": "lrp_zplus"}),
    "lrp_epsilon_plus_flat": ("lrp", {"composite": "epsilon_plus_flat"}),
    "dtd": "dtd",
}
QUICK = ("gradient", "gbp", "lrp_zplus", "dtd")
#: rows of the VGG-16 heatmap grid (all methods are in the JSON; the grid stays under 200 KB)
GRID = ("gradient", "input_x_gradient", "gbp", "rectgrad", "lrp_zplus", "dtd")


def available(labels) -> dict:
    have = set(list_methods("attribution"))
    out = {}
    for label in labels:
        spec = ALL_METHODS[label]
        name = spec if isinstance(spec, str) else spec[0]
        if name in have:
            out[label] = spec
    return out


def train_digits(quick: bool, seed: int = 0) -> tuple[torch.nn.Module, float, float]:
    """DigitsCNN on 16x16 digits; returns (model, test accuracy, seconds)."""
    xt, yt = load_digits(16, "test").tensors
    t0 = time.perf_counter()
    model = digits_model(width=8 if quick else 16, hidden=32 if quick else 64, epochs=2 if quick else 6,
                         lr=1e-2 if quick else 5e-3, seed=seed)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    return model, acc, seconds


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.3f}"


def run(quick: bool = False, fig_dir: str | Path | None = None, seed: int = 0) -> dict:
    """Run everything; returns the JSON-ready numbers and writes figures to ``fig_dir`` (if given)."""
    fig = Path(fig_dir) if fig_dir is not None else None
    labels = QUICK if quick else tuple(ALL_METHODS)
    methods = available(labels)
    out: dict = {
        "quick": quick, "seed": seed, "methods": list(methods), "skipped": [m for m in labels if m not in methods],
        "device": "cpu", "torch": torch.__version__, "python": platform.python_version(),
    }
    t_start = time.perf_counter()

    # ------------------------------------------------------------------ (a) digits CNN, trained here
    model, acc, t_train = train_digits(quick, seed)
    print(f"[digits] DigitsCNN trained in {t_train:.1f} s, test accuracy {acc:.3f}")
    xt, _ = load_digits(16, "test").tensors
    xs = xt[: 8 if quick else 32]
    casc = cascading_randomization(model, xs, None, methods, order="top_down", seed=seed, keep_maps=True)
    print(casc.table("ssim"))
    print(casc.table("ssim_flip"))
    out["digits"] = {"test_accuracy": acc, "train_seconds": round(t_train, 2), "n_samples": len(xs),
                     "cascading": casc.to_dict()}
    if not quick:
        ind = cascading_randomization(model, xs, None, methods, order="independent", seed=seed)
        print(ind.table("ssim_flip"))
        out["digits"]["independent"] = ind.to_dict()
    align = [input_alignment(model, xs, None, spec, layerwise=True) for spec in methods.values()]
    for label, a in zip(methods, align):
        a.method = label
    print("[digits] input alignment: " + ", ".join(f"{a.method} {a.mean:.3f}" for a in align))
    out["digits"]["alignment"] = {a.method: a.to_dict() for a in align}
    xsuf = xt[: 100 if quick else 300]
    suff = [key_information_sufficiency(model, xsuf, None, spec) for spec in methods.values()]
    for label, s in zip(methods, suff):
        s.method = label
        print(f"[digits] sufficiency {label:<22} " + " ".join(f"{k:g}%:{v:.2f}" for k, v in zip(s.ks, s.unchanged)))
    print(f"[digits] sufficiency {'random elements':<22} " + " ".join(
        f"{k:g}%:{v:.2f}" for k, v in zip(suff[0].ks, suff[0].random)))
    out["digits"]["sufficiency"] = {s.method: s.to_dict() for s in suff}
    conv = [cosine_similarity_convergence(model, spec, xs[:2], n=8 if quick else 16, seed=seed)
            for spec in methods.values()]
    for label, c in zip(methods, conv):
        c.method = label
        print(f"[digits] convergence {label:<22} " + " ".join(_fmt(v) for v in c.median))
    out["digits"]["convergence"] = {c.method: c.to_dict() for c in conv}
    if fig is not None:
        plots.randomization_grid(casc, xs, sample=0, path=fig / "analysis_digits_grid.png",
                                 title="Trained digits CNN: cascading randomization (top block first)")
        plots.similarity_curves(casc, "ssim_flip", path=fig / "analysis_digits_ssim.png",
                                title="Digits CNN: sign-flip SSIM to the original map")
        plots.sufficiency_curves(suff, path=fig / "analysis_sufficiency.png",
                                 title="Digits CNN: key-information sufficiency")
        plots.convergence_curves(conv, path=fig / "analysis_convergence.png",
                                 title="Digits CNN: cosine similarity convergence (inject at logits)")

    # ------------------------------------------------------------------ (b) random VGG-16 on photos
    import torchvision

    size = 48 if quick else 112
    photos = load_photos(size)
    torch.manual_seed(seed)
    vgg = torchvision.models.vgg16(weights=None).eval()
    vmethods = methods
    casc_v = cascading_randomization(vgg, photos, None, vmethods, order="top_down", seed=seed,
                                     max_blocks=2 if quick else 5, keep_maps=True)
    print(casc_v.table("ssim"))
    print(casc_v.table("ssim_flip"))
    align_v = [input_alignment(vgg, photos, None, spec, layerwise=not quick) for spec in vmethods.values()]
    for label, a in zip(vmethods, align_v):
        a.method = label
    print("[vgg16] input alignment: " + ", ".join(f"{a.method} {a.mean:.3f}" for a in align_v))
    out["vgg16"] = {"size": size, "n_photos": len(photos), "cascading": casc_v.to_dict(),
                    "alignment": {a.method: a.to_dict() for a in align_v}}
    if not quick:
        conv_v = [cosine_similarity_convergence(vgg, spec, photos[:1], n=6, seed=seed, inject_at="classifier.3")
                  for spec in vmethods.values()]
        for label, c in zip(vmethods, conv_v):
            c.method = label
            print(f"[vgg16] convergence {label:<22} " + " ".join(_fmt(v) for v in c.median))
        out["vgg16"]["convergence"] = {c.method: c.to_dict() for c in conv_v}

    # timing of one attribution per method, as a ratio to the plain gradient (same run, same input)
    from toolkit_core import attribute

    def once(spec) -> float:
        name, params = (spec, {}) if isinstance(spec, str) else spec
        t0 = time.perf_counter()
        attribute(vgg, photos, None, method=name, **params)
        return time.perf_counter() - t0

    t_ref = once("gradient")
    ratios = {label: round(once(spec) / t_ref, 3) for label, spec in vmethods.items()}
    print(f"[vgg16] attribution time / gradient time ({size}x{size}, batch {len(photos)}): {ratios}")
    out["vgg16"]["time_ratio_to_gradient"] = ratios
    out["vgg16"]["gradient_seconds"] = round(t_ref, 3)
    if fig is not None:
        plots.randomization_grid(casc_v, photos, sample=1, path=fig / "analysis_vgg16_grid.png", dpi=60,
                                 methods=[m for m in GRID if m in casc_v.methods],
                                 title=f"Random VGG-16 ({size}x{size}): cascading randomization")
        plots.similarity_curves(casc_v, "ssim_flip", path=fig / "analysis_vgg16_ssim.png",
                                title="Random VGG-16: sign-flip SSIM to the original map")
        plots.alignment_bars(align_v, path=fig / "analysis_alignment.png",
                             title=f"Input alignment on a random VGG-16 ({len(photos)} photos)")

    # ------------------------------------------------------------------ the expected ordering
    checks = {}
    for where, res in (("digits", casc), ("vgg16", casc_v)):
        grad = res.mean("gradient", "ssim_flip")[0] if "gradient" in res.methods else float("nan")
        for label in ("gbp", "lrp_zplus", "dtd"):
            if label in res.methods:
                v = res.mean(label, "ssim_flip")[0]
                checks[f"{where}: {label} > gradient (sign-flip SSIM, top block randomized)"] = {
                    "method": round(v, 4), "gradient": round(grad, 4), "holds": bool(v > grad)}
    for label in ("gbp", "lrp_zplus", "dtd"):
        if label in vmethods:
            a = next(x for x in align_v if x.method == label).mean
            g = next(x for x in align_v if x.method == "gradient").mean
            checks[f"vgg16: {label} alignment > gradient"] = {"method": round(a, 4), "gradient": round(g, 4),
                                                               "holds": bool(a > g)}
    out["expected_ordering"] = checks
    for k, v in checks.items():
        print(f"[check] {k}: {v['method']:.3f} vs {v['gradient']:.3f} -> {'holds' if v['holds'] else 'FAILS'}")
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    print(f"total {out['seconds']:.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer methods, samples and blocks (~30-60 s)")
    p.add_argument("--fig-dir", default=str(ROOT / "docs" / "figures"), help="where the PNGs go")
    p.add_argument("--json", default=str(ROOT / "docs" / "results" / "analysis.json"), help="numbers (JSON)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = run(quick=args.quick, fig_dir=args.fig_dir, seed=args.seed)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} and figures in {args.fig_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
