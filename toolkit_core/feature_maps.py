"""A layer's feature maps (and their gradients) for class-activation-map methods.

CAM methods (Grad-CAM, Grad-CAM++, Eigen-CAM) read the activations ``A`` of one layer -- by default
*the last spatial feature map in execution order* -- and the gradient of the target logit with
respect to ``A``; their map, computed at the layer's resolution, is upsampled to the input size.

* :func:`spatial_layers` -- leaf modules whose output is a spatial feature map ``(B, K, H', W')``
  (or ``(B, K, L)`` / ``(B, K, D, H, W)``), in the order their forward first runs.
* :func:`find_layer` -- a layer by name, or automatically the last spatial feature map.
* :func:`capture` -- one forward pass with a plain forward hook: logits and the layer's output,
  which stays in the autograd graph so ``torch.autograd.grad(score, A)`` gives ``dS/dA``.
* :func:`upsample` -- bilinear (linear / trilinear) resize with half-pixel centres, the same
  convention as OpenCV's ``resize`` that pytorch-grad-cam uses.
* :func:`expand_to_input` -- a ``(B, 1, ...)`` map repeated over the input's channels.

In-place activations (``nn.ReLU(inplace=True)``) would overwrite a captured output; :func:`capture`
switches them off inside the call and restores the flags, also on error. Hooks are removed on exit;
callers run inside :func:`toolkit_core.modelstate.preserved` (every attribution method does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attribution.inputs import logits_of

__all__ = ["Captured", "capture", "expand_to_input", "find_layer", "no_inplace", "spatial_layers", "upsample"]


def _is_leaf(m: nn.Module) -> bool:
    return next(iter(m.children()), None) is None


def _spatial(out: object) -> bool:
    """A tensor ``(B, K, *S)`` with 1 to 3 spatial dims, not all of size one."""
    return isinstance(out, Tensor) and 3 <= out.dim() <= 5 and any(s > 1 for s in out.shape[2:])


def no_inplace(model: nn.Module):
    """``inplace=False`` on every module that has the flag; restored on exit (also on error):
    :func:`toolkit_core.attribution.canonizers.out_of_place`."""
    from .attribution.canonizers import out_of_place

    return out_of_place(model)


def spatial_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Names of leaf modules whose output is a spatial feature map, in execution order on ``x[:1]``."""
    leaves = {n: m for n, m in model.named_modules() if n and _is_leaf(m)}
    order: list[str] = []
    handles = []
    for name, m in leaves.items():
        def hook(_m, _i, out, name=name):
            if _spatial(out):
                if name in order:  # a module called more than once counts at its last call
                    order.remove(name)
                order.append(name)
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad(), no_inplace(model):
            logits_of(model, x[:1])
    finally:
        for h in handles:
            h.remove()
    return order


def find_layer(model: nn.Module, x: Tensor, layer: str | None = None) -> tuple[str, nn.Module]:
    """``(name, module)`` of ``layer`` (a name from ``model.named_modules()``), or of the last spatial map."""
    modules = dict(model.named_modules())
    if layer is not None:
        if not isinstance(layer, str) or layer not in modules or not layer:
            close = [n for n in modules if n and isinstance(layer, str) and layer.split(".")[-1] in n][:5]
            raise ValueError(
                f"no sub-module named {layer!r} in the model"
                + (f"; did you mean one of {close}?" if close else "; pick a name from model.named_modules()")
            )
        return layer, modules[layer]
    names = spatial_layers(model, x)
    if not names:
        raise ValueError(
            "the model has no layer whose output is a spatial feature map (B, K, H, W); class activation "
            "maps need one -- pass layer='<module name>' explicitly"
        )
    return names[-1], modules[names[-1]]


@dataclass
class Captured:
    """The logits and the layer output ``A`` of one forward pass (``A`` is in the autograd graph)."""

    logits: Tensor
    activation: Tensor
    layer: str


def capture(model: nn.Module, x: Tensor, layer: str | None = None, grad: bool = True) -> Captured:
    """Forward ``x`` once and keep the output of ``layer`` (see :func:`find_layer`).

    With ``grad=True`` the pass runs with autograd enabled (``x`` need not require grad: the layer
    output does, through the parameters, or is made a leaf of the graph below it). The last call of
    the module wins when it runs more than once.
    """
    name, module = find_layer(model, x, layer)
    box: dict[str, Tensor] = {}

    def hook(_m, _i, out):
        if not isinstance(out, Tensor):
            raise TypeError(f"layer {name!r} returned {type(out).__name__}; pick a layer that returns one tensor")
        if grad and not out.requires_grad:
            out = out.detach().requires_grad_(True)  # frozen layers below: make A a leaf of the graph
            box["out"] = out
            return out
        box["out"] = out
        return None

    handle = module.register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad), no_inplace(model):
            logits = logits_of(model, x)
    finally:
        handle.remove()
    if "out" not in box:
        raise ValueError(f"layer {name!r} did not run in the forward pass; pick a layer the model uses")
    act = box["out"]
    if act.dim() < 3:
        raise ValueError(
            f"layer {name!r} outputs shape {tuple(act.shape)}, not a spatial feature map (B, K, H, W); "
            "pick a convolutional layer"
        )
    return Captured(logits, act, name)


_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def upsample(cam: Tensor, size: tuple[int, ...]) -> Tensor:
    """Resize ``(B, 1, *S)`` to ``(B, 1, *size)`` with (bi/tri)linear interpolation, half-pixel centres."""
    if tuple(cam.shape[2:]) == tuple(size):
        return cam
    if cam.dim() - 2 != len(size):
        raise ValueError(
            f"the layer's map has {cam.dim() - 2} spatial dims {tuple(cam.shape[2:])} but the input has "
            f"{len(size)} {tuple(size)}; pick a layer with as many spatial dims as the input"
        )
    return F.interpolate(cam, size=tuple(size), mode=_MODES[len(size)], align_corners=False)


def expand_to_input(cam: Tensor, x: Tensor) -> Tensor:
    """``(B, 1, *S)`` -> ``x``'s shape: the same map on every input channel."""
    return cam.expand(x.shape[0], x.shape[1], *cam.shape[2:]).contiguous()
