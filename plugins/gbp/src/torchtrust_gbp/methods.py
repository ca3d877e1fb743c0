"""Guided backpropagation on the modified-backprop engine."""

from __future__ import annotations

import torch
from torch import nn

from toolkit_core.attribution.base import ActivationMethod
from toolkit_core.attribution.rules import GATES, RELUS, ActivationRule

from .kernels import guided_relu_grad


class GuidedReLU(ActivationRule):
    """``R_in = 1[z > 0] * max(R_out, 0)`` at a ReLU (``1[0 < z < 6]`` at a ReLU6/Hardtanh).

    At a gate ``f(z) = z s(z)`` (GELU, SiLU, Hardswish, Mish) the ReLU's mask ``1[z > 0] = s(z)`` is
    replaced by the gate: ``R_in = s(z) * max(R_out, 0)``; for a ReLU this is the rule above.
    """

    name = "gbp_relu"
    supports = (*RELUS, *GATES)

    def forward(self, layer, a, z):
        return self.active(layer, a, z)

    def keeps_inplace(self, module: nn.Module) -> bool:
        return isinstance(module, RELUS)  # the mask is the same computed from the input or from the output

    def backward(self, layer, mask, g):
        if mask.dtype != torch.bool:
            return g.clamp(min=0) * mask
        return guided_relu_grad(g, mask)


class GuidedBackprop(ActivationMethod):
    """Guided backpropagation (Springenberg et al. 2015).

    ``R_in = 1[z > 0] * max(R_out, 0)`` at every ReLU, the plain gradient at linear layers; the map
    is the modified gradient with respect to the input (not multiplied by the input). ``composite``:
    a dict merged over the method's own (e.g. ``{"features.3": "gradient"}``).
    """

    name = "gbp"
    summary = "Guided backpropagation: ReLU backward keeps positive signal where the unit was active."
    citation = "arXiv:1412.6806"
    kernels = ("torchtrust_gbp::guided_relu_grad",)
    rules = {"gbp_relu": GuidedReLU}

    def __init__(self, composite: dict | None = None):
        self.composite_override = composite

    def activation_rule(self):
        return GuidedReLU()
