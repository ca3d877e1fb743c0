"""The attribution zoo: every torchvision classification family, weights=None, a small input, and the
exact checks each (model, method) pair must pass -- or a clear UnsupportedModelError.

Used by ``tests/test_attribution_zoo.py`` and by ``benchmarks/attribution_support.py`` (which writes
docs/methods/support.md). Checks, on a copy of the model with every bias-like parameter zeroed
(biases, BatchNorm means, ViT's class token and position embedding):

* ``lrp0_ixg``: LRP-0 equals input x gradient (ReLU networks only: elsewhere gates, LayerNorm
  scales and attention weights are held constant, so LRP is not the gradient by design);
* ``conservation``: LRP-epsilon with epsilon -> 0 (0, with ``0/0 := 0``; float64) -- and the
  ``epsilon_plus_flat`` composite --
  give input relevance summing to the target logit within 1e-3 (relative);
* ``gbp_fixed_point``: the GBP map equals an independent implementation of its formula (autograd with
  every ReLU's backward replaced by ``1[z > 0] max(g, 0)``), on ReLU networks.
"""

from __future__ import annotations

import copy
import time

import torch
import torchvision
from torch import nn

import toolkit_core as tt
from toolkit_core.attribution import layerwise
from toolkit_core.attribution.engine import UnsupportedModelError

#: family -> (constructor name, smallest convenient input side, extra constructor arguments)
FAMILIES: dict[str, list[tuple[str, int, dict]]] = {
    "AlexNet": [("alexnet", 63, {})],
    "VGG": [("vgg11", 32, {}), ("vgg11_bn", 32, {}), ("vgg16", 32, {}), ("vgg16_bn", 32, {})],
    "ResNet": [("resnet18", 32, {}), ("resnet50", 32, {})],
    "ResNeXt": [("resnext50_32x4d", 32, {})],
    "Wide-ResNet": [("wide_resnet50_2", 32, {})],
    "DenseNet": [("densenet121", 32, {})],
    "GoogLeNet": [("googlenet", 32, {"aux_logits": False, "init_weights": False})],
    "Inception-v3": [("inception_v3", 75, {"aux_logits": False, "init_weights": False})],
    "SqueezeNet": [("squeezenet1_1", 32, {})],
    "ShuffleNet-v2": [("shufflenet_v2_x0_5", 32, {})],
    "MobileNet-v2": [("mobilenet_v2", 32, {})],
    "MobileNet-v3": [("mobilenet_v3_small", 32, {}), ("mobilenet_v3_large", 32, {})],
    "MNASNet": [("mnasnet0_5", 32, {})],
    "EfficientNet": [("efficientnet_b0", 32, {})],
    "EfficientNet-v2": [("efficientnet_v2_s", 32, {})],
    "RegNet": [("regnet_x_400mf", 32, {}), ("regnet_y_400mf", 32, {})],
    "ConvNeXt": [("convnext_tiny", 32, {})],
    "ViT": [("vit_b_16", 32, {"image_size": 32})],
    "Swin": [("swin_t", 64, {})],
    "MaxViT": [("maxvit_t", 224, {})],
}
#: the representative subset the default test run covers (one cheap model per kind of architecture)
FAST = ["resnet18", "googlenet", "shufflenet_v2_x0_5", "mobilenet_v3_small", "regnet_y_400mf"]
_RELU_ONLY = {"alexnet", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "resnet18", "resnet50", "resnext50_32x4d",
              "wide_resnet50_2", "densenet121", "googlenet", "inception_v3", "squeezenet1_1", "shufflenet_v2_x0_5",
              "mobilenet_v2", "mnasnet0_5", "regnet_x_400mf"}
_BIAS_LIKE = ("bias", "running_mean", "class_token", "pos_embedding")
TOL = 1e-3


def all_models() -> list[tuple[str, str, int, dict]]:
    return [(fam, name, side, kw) for fam, entries in FAMILIES.items() for name, side, kw in entries]


def build(name: str, kwargs: dict) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    for m in model.modules():  # ViT initializes its head with zeros: every logit would be 0
        if isinstance(m, nn.Linear) and not m.weight.detach().abs().sum():
            nn.init.normal_(m.weight, std=0.02)
    return model


def zero_biases(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if name.split(".")[-1] in _BIAS_LIKE:
                t.zero_()
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, lo, hi):
        ctx.save_for_backward((z > lo) & (z < hi))
        return z.clamp(lo, hi)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return mask * g.clamp(min=0), None, None


class _GuidedMode(torch.overrides.TorchFunctionMode):
    """Independent reference: every ReLU (module or functional, in place or not) becomes _GuidedReLU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("relu", "relu_", "hardtanh", "relu6") and isinstance(args[0], torch.Tensor) \
                and args[0].requires_grad:
            if name.startswith("relu"):
                lo, hi = 0.0, 6.0 if name == "relu6" else float("inf")
            else:
                lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
                hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
            out = _GuidedReLU.apply(args[0], lo, hi)
            if name == "relu_" or kwargs.get("inplace") or (len(args) > 1 and args[-1] is True):
                return args[0].copy_(out)
            return out
        return func(*args, **kwargs)


def gbp_reference(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    xr = x.clone().requires_grad_(True)
    with torch.enable_grad(), _GuidedMode():
        out = model(xr)
    (g,) = torch.autograd.grad(out[:, target].sum(), xr)
    return g


def check(name: str, side: int, kwargs: dict, methods: tuple[str, ...] = ("lrp", "gbp")) -> dict[str, dict]:
    """Run the checks for one model; ``{method: {"outcome": "exact" | "refused" | "FAILED", ...}}``."""
    torch.set_num_threads(1)
    model = build(name, kwargs).double()  # float64: random-init activations shrink to 1e-12 and below
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = 3
    report: dict[str, dict] = {}
    zb = zero_biases(model)
    for method in methods:
        t0 = time.perf_counter()
        row: dict = {}
        try:
            if method == "lrp":
                res = layerwise(zb, x, target, method="lrp", rule="lrp_epsilon", epsilon=0.0, record=None)
                logit = res.logits[:, target]
                row["conservation"] = _rel(res.attribution.flatten(1).sum(1), logit)
                res = layerwise(zb, x, target, method="lrp", composite="epsilon_plus_flat", epsilon=0.0,
                                record=None)
                row["composite_conservation"] = _rel(res.attribution.flatten(1).sum(1), logit)
                if name in _RELU_ONLY:
                    lrp0 = tt.attribute(zb, x, target, method="lrp", rule="lrp_0", epsilon=0.0)
                    ixg = tt.attribute(zb, x, target, method="input_x_gradient")
                    row["lrp0_vs_ixg"] = float((lrp0 - ixg).abs().max() / ixg.abs().max())
                # the composite's figure is informational: z+ loses the relevance of units whose positive
                # contributions are all zero (0/0 := 0), so it need not conserve exactly
                ok = max(v for k, v in row.items() if k != "composite_conservation") < TOL
            else:
                g = tt.attribute(model, x, target, method="gbp")
                assert torch.isfinite(g).all()
                if name in _RELU_ONLY:
                    ref = gbp_reference(model, x, target)
                    row["gbp_vs_reference"] = float((g - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
                    ok = row["gbp_vs_reference"] < TOL
                else:
                    row["note"] = "gates/attention: defined (gates and attention weights held constant)"
                    ok = True
            row["outcome"] = "exact" if ok else "FAILED"
        except UnsupportedModelError as e:
            row["outcome"], row["error"] = "refused", str(e).split(". To add")[0]
        row["seconds"] = round(time.perf_counter() - t0, 2)
        report[method] = row
    return report
