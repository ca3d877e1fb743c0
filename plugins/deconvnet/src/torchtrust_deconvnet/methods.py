"""DeconvNet on the modified-backprop engine."""

from __future__ import annotations

from torch import nn

from toolkit_core.attribution.base import ActivationMethod
from toolkit_core.attribution.rules import GATES, RELUS, ActivationRule


class DeconvReLU(ActivationRule):
    """``R_in = max(R_out, 0)`` at a ReLU: the forward activation pattern is ignored (at a gate
    ``z s(z)`` too: the gate is the forward pattern)."""

    name = "deconvnet_relu"
    supports = (*RELUS, *GATES)

    def backward(self, layer, state, g):
        return g.clamp(min=0)

    def keeps_inplace(self, module: nn.Module) -> bool:
        return True  # needs nothing from the forward pass


class DeconvNet(ActivationMethod):
    """DeconvNet (Zeiler & Fergus 2014): ``R_in = max(R_out, 0)`` at ReLUs, gradient elsewhere.

    The map is the modified gradient with respect to the input (not multiplied by the input).
    """

    name = "deconvnet"
    summary = "DeconvNet: ReLU backward passes the positive signal, ignoring the forward mask."
    citation = "arXiv:1311.2901"
    rules = {"deconvnet_relu": DeconvReLU}

    def __init__(self, composite: dict | None = None):
        self.composite_override = composite

    def activation_rule(self):
        return DeconvReLU()
