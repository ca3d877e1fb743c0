"""DeconvNet on the modified-backprop engine."""

from __future__ import annotations

from torch import nn

from toolkit_core.attribution.base import ModifiedBackprop
from toolkit_core.attribution.rules import ActivationRule

from .kernels import relu_grad


class DeconvReLU(ActivationRule):
    """``R_in = max(R_out, 0)`` at a ReLU: the forward activation pattern is ignored."""

    name = "deconvnet_relu"

    def backward(self, layer, state, g):
        return relu_grad(g)

    def keeps_inplace(self, module: nn.Module) -> bool:
        return True  # needs nothing from the forward pass


class DeconvNet(ModifiedBackprop):
    """DeconvNet (Zeiler & Fergus 2014): ``R_in = max(R_out, 0)`` at ReLUs, gradient elsewhere.

    The map is the modified gradient with respect to the input (not multiplied by the input).
    """

    name = "deconvnet"
    summary = "DeconvNet: ReLU backward passes the positive signal, ignoring the forward mask."
    citation = "arXiv:1311.2901"
    kernels = ("torchtrust_deconvnet::relu_grad",)
    multiply_input = False
    rules = {"deconvnet_relu": DeconvReLU}

    def composite(self):
        return {"activation": DeconvReLU(), "conv": "gradient", "linear": "gradient", "bn": "gradient"}
