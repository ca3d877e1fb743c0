"""Deep Taylor decomposition on the modified-backprop engine."""

from __future__ import annotations

from typing import Any

from toolkit_core.attribution.base import RelevanceMethod


class DTD(RelevanceMethod):
    """Deep Taylor decomposition (Montavon et al. 2017).

    Hidden layers (``a >= 0``): ``R_j = sum_k a_j w_jk+ / sum_j a_j w_jk+ R_k`` (z+). First layer,
    ``l <= x <= h``: ``R_j = sum_k (x_j w_jk - l_j w_jk+ - h_j w_jk-) / sum_j (same) R_k`` (zB).
    ``low``/``high``: the pixel bounds (floats); ``None`` takes the model's declared
    ``model.input_range`` (an error if it has none: bounds never come from the batch).
    ``composite``: a dict merged over the method's own.
    """

    name = "dtd"
    summary = "Deep Taylor decomposition: z+ on hidden layers, zB (box-constrained) on the first layer."
    citation = "arXiv:1512.02479"

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """The modified-backprop seed's claims against the plain gradient (see ``modified_bp_claims``)."""
        from toolkit_core.experiment.anchors import modified_bp_claims

        return modified_bp_claims(stage, result, labels, reference="gradient")

    def __init__(
        self, low: float | None = None, high: float | None = None, epsilon: float = 1e-6, low_memory: bool = False,
        composite: dict | None = None,
    ):
        if low is not None and high is not None and low >= high:
            raise ValueError(f"dtd: low must be smaller than high, got low={low}, high={high}")
        if epsilon < 0:
            raise ValueError(f"dtd: epsilon must be >= 0, got {epsilon}")
        self.low, self.high, self.epsilon, self.low_memory = low, high, epsilon, low_memory
        self.composite_override = composite

    def composite(self):
        return {"first": "zbox", "conv": "zplus", "linear": "zplus"}

    def rule_params(self):
        return {"low": self.low, "high": self.high, "epsilon": self.epsilon}
