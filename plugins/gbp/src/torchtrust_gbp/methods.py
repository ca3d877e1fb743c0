"""Guided backpropagation on the modified-backprop engine: the rule is the core's ``gbp_relu``
(:class:`toolkit_core.attribution.rules.GuidedReLU`); this plugin adds its fused mask kernel."""

from __future__ import annotations

from typing import Any

from toolkit_core.attribution.base import ActivationMethod

from .kernels import guided_relu_grad


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
    activation = "gbp_relu"
    rule_kernels = {"guided_relu_grad": guided_relu_grad}

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """The modified-backprop seed's claims against the plain gradient (see ``modified_bp_claims``)."""
        from toolkit_core.experiment.anchors import modified_bp_claims

        return modified_bp_claims(stage, result, labels, reference="gradient", vgg_labels=labels)

    def __init__(self, composite: dict | None = None):
        self.composite_override = composite
