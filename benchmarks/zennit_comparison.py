"""Our attribution maps against Zennit's (the reference LRP library), with speed ratios.

    pip install zennit           # only in a benchmark environment: never a dependency of torchtrust
    python benchmarks/zennit_comparison.py [--size 64] [--batch 2] [--models vgg16 vgg16_bn resnet18 resnet50]

For each model (torchvision, weights=None, eval, seeded) and method, both libraries explain the same
batch for the predicted class, starting from the logit's relevance. Printed per (model, method):

* ``rel.err``: ``max_b ||ours_b - zennit_b|| / ||zennit_b||`` (raw maps, per sample);
* ``scaled``: the same after the best per-sample scale ``s_b = <ours_b, zennit_b> / <ours_b, ours_b>``
  (the issue's "per-sample scale aside");
* ``corr``: the smallest per-sample Pearson correlation;
* ``time``: ours / Zennit's, median of ``--repeats`` calls each (same process, taking turns).

Zennit runs with its torchvision canonizers (VGGCanonizer merges BatchNorm; ResNetCanonizer merges it
and routes the residual sum through its Norm rule) and its stock composites: GuidedBackprop, DeconvNet,
a layer map with Epsilon (resp. ZPlus) on every conv and dense layer, EpsilonPlusFlat,
EpsilonGammaBox(low=0, high=1), EpsilonAlpha2Beta1.

``--bn-eps 0`` sets every BatchNorm's eps to 0: Zennit's canonizer leaves each merged BatchNorm as
``x / sqrt(1 + eps)`` (it resets the statistics and the affine parameters, not eps), so with
torchvision's ``eps = 1e-5`` its canonized model scales every activation after a BatchNorm by
``1 - 5e-6`` while the next layer's bias is not scaled; near-zero pre-activations and near-tied max
pools then differ from the model's own. With ``eps = 0`` the two are the same function.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

import toolkit_core as tt

OURS = {
    "gbp": ("gbp", {}),
    "deconvnet": ("deconvnet", {}),
    "epsilon": ("lrp", {"rule": "lrp_epsilon"}),
    "zplus": ("lrp", {"rule": "lrp_zplus"}),
    "epsilon_plus_flat": ("lrp", {"composite": "epsilon_plus_flat"}),
    "epsilon_gamma_box": ("lrp", {"composite": "epsilon_gamma_box", "low": 0.0, "high": 1.0}),
    "epsilon_alpha2_beta1": ("lrp", {"composite": "epsilon_alpha2_beta1"}),
}


def zennit_composite(method: str, model_name: str):
    from zennit import composites as zc
    from zennit import rules as zr
    from zennit import torchvision as ztv
    from zennit.types import Convolution, Linear

    canon = [ztv.ResNetCanonizer()] if model_name.startswith("resnet") else [ztv.VGGCanonizer()]
    if method == "gbp":
        return zc.GuidedBackprop(canonizers=canon)
    if method == "deconvnet":
        return zc.DeconvNet(canonizers=canon)
    if method in ("epsilon", "zplus"):
        rule = zr.Epsilon(1e-6) if method == "epsilon" else zr.ZPlus(1e-6)
        base = [(torch.nn.ReLU, zr.Pass()), (ztv.Sum, zr.Norm()), (torch.nn.AdaptiveAvgPool2d, zr.Norm()),
                (torch.nn.AvgPool2d, zr.Norm())]
        return zc.LayerMapComposite(layer_map=base + [(Convolution, rule), (Linear, rule)], canonizers=canon)
    if method == "epsilon_plus_flat":
        return zc.EpsilonPlusFlat(canonizers=canon)
    if method == "epsilon_gamma_box":
        return zc.EpsilonGammaBox(low=0.0, high=1.0, canonizers=canon)
    if method == "epsilon_alpha2_beta1":
        return zc.EpsilonAlpha2Beta1(canonizers=canon)
    raise KeyError(method)


def zennit_map(model, x, target, method, model_name):
    from zennit.attribution import Gradient

    with Gradient(model=model, composite=zennit_composite(method, model_name)) as attributor:
        def seed(out):
            onehot = torch.zeros_like(out).scatter_(1, target[:, None], 1.0)
            return onehot if method in ("gbp", "deconvnet") else onehot * out

        _, relevance = attributor(x, seed)
    return relevance.detach()


def compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    raw = ((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-300)).max()
    s = (a * b).sum(1, keepdim=True) / (a * a).sum(1, keepdim=True).clamp_min(1e-300)
    scaled = ((s * a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-300)).max()
    corr = min(float(torch.corrcoef(torch.stack([a[i], b[i]]))[0, 1]) for i in range(a.shape[0]))
    return float(raw), float(scaled), corr


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(models, size, batch, repeats, methods=tuple(OURS), bn_eps: float | None = None) -> list[dict]:
    rows = []
    for name in models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        for m in model.modules():  # non-trivial BatchNorm statistics, so that folding is exercised
            if isinstance(m, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                if bn_eps is not None:
                    m.eps = bn_eps
        x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            target = model(x).argmax(1)
        for method in methods:
            ours_name, params = OURS[method]
            ours = tt.attribute(model, x, target, method=ours_name, **params)
            ref = zennit_map(model, x, target, method, name)
            raw, scaled, corr = compare(ours, ref)
            t_ours = _median_time(lambda: tt.attribute(model, x, target, method=ours_name, **params),  # noqa: B023
                                  repeats)
            t_ref = _median_time(lambda: zennit_map(model, x, target, method, name), repeats)  # noqa: B023
            row = {"model": name, "method": method, "rel_err": raw, "scaled": scaled, "corr": corr,
                   "time_ratio": t_ours / t_ref}
            print(f"{name:10s} {method:22s} rel.err {raw:9.2e}  scaled {scaled:9.2e}  corr {corr:.6f}  "
                  f"time {t_ours / t_ref:5.2f}x", flush=True)
            rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["vgg16", "vgg16_bn", "resnet18", "resnet50"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=list(OURS), choices=list(OURS))
    p.add_argument("--bn-eps", type=float, default=None,
                   help="set every BatchNorm's eps (default: torchvision's 1e-5). Zennit's merged BatchNorm "
                        "computes x / sqrt(1 + eps), not the identity; with 0 both libraries compute the same function")
    args = p.parse_args()
    torch.set_num_threads(1)
    run(args.models, args.size, args.batch, args.repeats, tuple(args.methods), args.bn_eps)


if __name__ == "__main__":
    main()
