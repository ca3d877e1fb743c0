"""RectGrad on the modified-backprop engine."""

from __future__ import annotations

from torch import nn

from toolkit_core.attribution.base import ActivationMethod
from toolkit_core.attribution.rules import ActivationRule

from .kernels import rectify


class RectifiedReLU(ActivationRule):
    """``R_in = 1[a * R_out > tau] * R_out``, ``tau`` = q-th percentile of ``a * R_out`` per sample.

    ``a`` is the ReLU's output (its activation).
    """

    name = "rectgrad_relu"

    def __init__(self, q: float = 98.0):
        if not 0 <= q <= 100:
            raise ValueError(f"q is a percentile and must lie in [0, 100], got {q}")
        self.q = float(q)

    def forward(self, layer, a, z):
        return z, z._version  # the activation (the output, also when the layer runs in place)

    def backward(self, layer, state, g):
        act, version = state
        if act._version != version:
            raise RuntimeError(
                f"rectgrad: the output of {type(layer).__name__} was modified in place after the forward pass; "
                "make the operation after it out of place"
            )
        return rectify(act, g, self.q)

    def keeps_inplace(self, module: nn.Module) -> bool:
        return True


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
    rules = {"rectgrad_relu": RectifiedReLU}

    def __init__(self, q: float = 98.0, composite: dict | None = None):
        if not 0 <= q <= 100:
            raise ValueError(f"rectgrad: q is a percentile and must lie in [0, 100], got {q}")
        self.q = q
        self.composite_override = composite

    def activation_rule(self):
        return RectifiedReLU(self.q)
