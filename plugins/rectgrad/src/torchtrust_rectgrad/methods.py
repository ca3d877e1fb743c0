"""RectGrad on the modified-backprop engine: the rule is the core's ``rectgrad_relu``
(:class:`toolkit_core.attribution.rules.RectifiedReLU`); this plugin adds its fused kernel."""

from __future__ import annotations

from typing import Any

from toolkit_core.attribution.base import ActivationMethod

from .kernels import rectify


class RectGrad(ActivationMethod):
    """Rectified gradient (Kim et al. 2019): ``R_in = 1[a * R_out > tau] * R_out`` at every ReLU.

    ``tau`` is the ``q``-th percentile of ``a * R_out`` per sample over (C, H, W) (default 98);
    linear layers use the plain gradient; the final map is multiplied by the input.
    """

    name = "rectgrad"
    summary = "Rectified gradient: ReLU backward keeps only the units with the top (100-q)% importance."
    citation = "arXiv:1902.04893"
    kernels = ("torchtrust_rectgrad::rectify",)
    multiply_input = True
    activation = "rectgrad_relu"
    rule_kernels = {"rectify": rectify}

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """The modified-backprop seed's claims against the plain gradient (see ``modified_bp_claims``)."""
        from toolkit_core.experiment.anchors import modified_bp_claims

        return modified_bp_claims(stage, result, labels, reference="gradient")

    def __init__(self, q: float = 98.0, composite: dict | None = None):
        if not 0 <= q <= 100:
            raise ValueError(f"rectgrad: q is a percentile and must lie in [0, 100], got {q}")
        self.q = q
        self.composite_override = composite

    def rule_params(self):
        return {"q": self.q}
