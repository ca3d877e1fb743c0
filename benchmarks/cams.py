"""CAMs and path/noise attributions against pytorch-grad-cam 1.5 and Captum 0.9 on the same models.

For each reference method we run ours and the reference on the same model, input and targets, and print

* ``rel err``: ``||ours - ref|| / ||ref||`` over the batch. pytorch-grad-cam returns each map min-max
  scaled to [0, 1] (after a ReLU); ours are scaled the same way first. For Eigen-CAM the SVD's sign is
  arbitrary in pytorch-grad-cam; ``rel err`` is taken per sample against our map with the sign that
  matches better, and ``flipped`` counts the samples where pytorch-grad-cam's sign was the opposite of
  our documented convention (``sum_k v_k >= 0``).
* ``time ratio``: our median time / the reference's median time over ``--repeats`` calls (after one
  warm-up), measured in the same process, turns alternating. Below 1 = we are faster.

Models: the digits CNN (trained, 16x16, batch 32) and a torchvision ResNet-18 (weights=None, eval,
112x112, batch 8). Captum IG: 32 steps, Gauss-Legendre and Riemann-left; SmoothGrad: NoiseTunnel over
Saliency(abs=False), 16 samples, stdev 0.1, same seed. Single-threaded (``torch.set_num_threads(1)``).

Run: ``python benchmarks/cams.py`` (needs ``pip install captum grad-cam``; a few minutes on one core).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _minmax(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    return ((flat - lo[:, None]) / (hi - lo + 1e-7)[:, None]).view_as(m)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def _time(fns: dict, repeats: int) -> dict[str, float]:
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def models():
    import torchvision

    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model

    d = digits_model()
    x, _ = load_digits(16, "test", seed=0).tensors
    x = x[:32]
    yield "digits CNN 16px b32", d, x, d(x).argmax(1), d.features[5]
    torch.manual_seed(0)
    r = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    xr = torch.rand(8, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    yield "ResNet-18 112px b8", r, xr, r(xr).argmax(1), r.layer4[-1]


def _row(label: str, name: str, err: float, ours, ref, repeats: int, note: str = "") -> None:
    t = _time({"ours": ours, "ref": ref}, repeats)
    print(f"{label:<22}{name:<22}{err:>10.2e}{t['ours'] / t['ref']:>12.2f}  {note}")


def bench_cam(label, model, x, y, layer, layer_module, ours: str, ref_cls, repeats: int) -> None:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    import toolkit_core as tt
    from toolkit_core.feature_maps import find_layer

    targets = [ClassifierOutputTarget(int(t)) for t in y]
    cam = ref_cls(model=model, target_layers=[layer_module])
    ref = torch.from_numpy(cam(input_tensor=x, targets=targets))
    mine = _minmax(tt.attribute(model, x, y, method=ours, layer=layer)[:, 0])
    _row(label, ours, _rel(mine, ref), lambda: tt.attribute(model, x, y, method=ours, layer=layer),
         lambda: cam(input_tensor=x, targets=targets), repeats, f"layer {layer} (auto: {find_layer(model, x)[0]})")


def bench_eigencam(label, model, x, layer, layer_module, repeats: int) -> None:
    import pytorch_grad_cam as pgc
    from torchtrust_eigencam import first_component_projection

    import toolkit_core as tt
    from toolkit_core.feature_maps import capture, upsample

    cam = pgc.EigenCAM(model=model, target_layers=[layer_module])
    ref = torch.from_numpy(cam(input_tensor=x, targets=None))
    pos = _minmax(tt.attribute(model, x, None, method="eigencam", layer=layer)[:, 0])
    with torch.no_grad():  # the other sign: relu(-M v) at the layer, then upsampled (as pytorch-grad-cam)
        proj = first_component_projection(capture(model, x, layer, grad=False).activation)
    neg = _minmax(upsample((-proj).clamp_min(0), tuple(x.shape[2:]))[:, 0])
    errs, flipped = [], 0
    for i in range(len(x)):
        e_pos, e_neg = _rel(pos[i:i + 1], ref[i:i + 1]), _rel(neg[i:i + 1], ref[i:i + 1])
        flipped += e_neg < e_pos
        errs.append(min(e_pos, e_neg))
    _row(label, "eigencam", max(errs), lambda: tt.attribute(model, x, None, method="eigencam", layer=layer),
         lambda: cam(input_tensor=x, targets=None), repeats,
         f"max per-sample; pytorch-grad-cam's sign opposite to ours on {flipped}/{len(x)}")


def bench_ig(label, model, x, y, rule: str, repeats: int) -> None:
    from captum.attr import IntegratedGradients
    from torchtrust_integrated_gradients import integrated_gradients

    import toolkit_core as tt

    ig = IntegratedGradients(model)
    ref = ig.attribute(x, baselines=0.0, target=y, n_steps=32, method=rule)
    mine = integrated_gradients(model, x, y, 0.0, 32, rule)
    _row(label, "ig " + rule, _rel(mine.attribution, ref),
         lambda: tt.attribute(model, x, y, method="integrated_gradients", steps=32, rule=rule),
         lambda: ig.attribute(x, baselines=0.0, target=y, n_steps=32, method=rule), repeats,
         f"max |completeness error| {float(mine.delta.abs().max()):.2e}")


def bench_smoothgrad(label, model, x, y, repeats: int) -> None:
    from captum.attr import NoiseTunnel, Saliency

    import toolkit_core as tt

    nt = NoiseTunnel(Saliency(model))

    def ref_sg():
        torch.manual_seed(3)
        return nt.attribute(x, nt_type="smoothgrad", nt_samples=16, stdevs=0.1, target=y, abs=False)

    def our_sg():
        return tt.attribute(model, x, y, method="smoothgrad", samples=16, noise=0.1, noise_scale="absolute", seed=3)

    _row(label, "smoothgrad", _rel(our_sg(), ref_sg()), our_sg, ref_sg, repeats, "same seed")


def main() -> None:
    import pytorch_grad_cam as pgc

    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{'model':<22}{'method':<22}{'rel err':>10}{'time ratio':>12}  note")
    for label, model, x, y, layer_module in models():
        layer = next(n for n, m in model.named_modules() if m is layer_module)
        bench_cam(label, model, x, y, layer, layer_module, "gradcam", pgc.GradCAM, args.repeats)
        bench_cam(label, model, x, y, layer, layer_module, "gradcam_pp", pgc.GradCAMPlusPlus, args.repeats)
        bench_eigencam(label, model, x, layer, layer_module, args.repeats)
        for rule in ("gausslegendre", "riemann_left"):
            bench_ig(label, model, x, y, rule, args.repeats)
        bench_smoothgrad(label, model, x, y, args.repeats)


if __name__ == "__main__":
    main()
