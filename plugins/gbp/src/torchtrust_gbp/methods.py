"""Guided backpropagation on the modified-backprop engine."""

from __future__ import annotations

from torch import nn

from toolkit_core.attribution.base import ModifiedBackprop
from toolkit_core.attribution.rules import ActivationRule

from .kernels import guided_relu_grad


class GuidedReLU(ActivationRule):
    """``R_in = 1[z > 0] * max(R_out, 0)`` at a ReLU (``1[0 < z < 6]`` at a ReLU6/Hardtanh)."""

    name = "gbp_relu"

    def forward(self, layer, a, z):
        return self.active(layer, a, z)

    def keeps_inplace(self, module: nn.Module) -> bool:
        return True  # the mask is the same computed from the input or from the output

    def backward(self, layer, mask, g):
        return guided_relu_grad(g, mask)


class GuidedBackprop(ModifiedBackprop):
    """Guided backpropagation (Springenberg et al. 2015).

    ``R_in = 1[z > 0] * max(R_out, 0)`` at every ReLU, the plain gradient at linear layers; the map
    is the modified gradient with respect to the input (not multiplied by the input).
    """

    name = "gbp"
    summary = "Guided backpropagation: ReLU backward keeps positive signal where the unit was active."
    citation = "arXiv:1412.6806"
    kernels = ("torchtrust_gbp::guided_relu_grad",)
    multiply_input = False
    rules = {"gbp_relu": GuidedReLU}

    def composite(self):
        return {"activation": GuidedReLU(), "conv": "gradient", "linear": "gradient", "bn": "gradient"}
