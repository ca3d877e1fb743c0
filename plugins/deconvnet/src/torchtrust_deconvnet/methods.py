"""DeconvNet on the modified-backprop engine: the rule is the core's ``deconvnet_relu``
(:class:`toolkit_core.attribution.rules.DeconvReLU`)."""

from __future__ import annotations

from toolkit_core.attribution.base import ActivationMethod


class DeconvNet(ActivationMethod):
    """DeconvNet (Zeiler & Fergus 2014): ``R_in = max(R_out, 0)`` at ReLUs, gradient elsewhere.

    The map is the modified gradient with respect to the input (not multiplied by the input).
    """

    name = "deconvnet"
    summary = "DeconvNet: ReLU backward passes the positive signal, ignoring the forward mask."
    citation = "arXiv:1311.2901"
    activation = "deconvnet_relu"

    def __init__(self, composite: dict | None = None):
        self.composite_override = composite
