"""Input alignment of an attribution method (operational definition ours, after Zheng et al. 2025,
arXiv:2503.11160).

* Per sample: ``align(x) = cos(vec(A(x)), vec(x - x0))`` where ``A`` is the attribution map and ``x0``
  the baseline (0 by default): 1 means the map is the input itself up to a positive scale.
* Layer-wise: for every layer ``l`` that owns parameters, ``cos(vec(R_l), vec(a_l))`` where ``a_l`` is the
  activation entering layer ``l`` and ``R_l`` the quantity the method propagates back to it (the
  modified gradient for GBP/deconvnet/RectGrad, the gradient for the plain gradient, whatever the
  rule propagates for LRP/DTD). Methods whose map is ``x * c(x)`` (input x gradient, LRP, DTD,
  RectGrad) use the relevance ``R_l = a_l * c_l`` where ``c_l`` is the back-propagated signal; methods whose
  map is ``c(x)`` use ``R_l = c_l`` (``quantity="auto"`` detects which). The first layer's input is ``x``.

The seed paper's claim: GBP, RectGrad, LRP and DTD combine the weights of activated neurons and so
produce maps aligned with the input, even on randomly initialized networks; the plain gradient does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import (
    Recorder,
    analysis_state,
    check_baseline,
    check_input,
    check_model,
    check_target_cheap,
    cosine_rows,
    param_layers,
    relevance_quantity,
    resolve_method,
    run_method,
)

__all__ = ["AlignmentResult", "input_alignment"]


@dataclass
class AlignmentResult:
    """``per_sample``: (B,) cosines; ``layerwise``: (n_layers, B) cosines, NaN where nothing flowed back."""

    method: str
    per_sample: np.ndarray
    layers: list[str]
    layerwise: np.ndarray
    quantity: str = "signal"  # what R_l is: the back-propagated signal c_l, or the relevance a_l * c_l

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_sample))

    def layer_means(self) -> list[float]:
        return [float(np.nanmean(r)) if np.isfinite(r).any() else float("nan") for r in self.layerwise]

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), 6)

        return {
            "test": "input_alignment",
            "method": self.method,
            "mean": clean(self.mean),
            "per_sample": [clean(v) for v in self.per_sample],
            "layers": self.layers,
            "layerwise_mean": [clean(v) for v in self.layer_means()],
            "layerwise_quantity": self.quantity,
        }

    def table(self) -> str:
        rows = [f"input alignment of {self.method}: mean cos(A, x - x0) = {self.mean:.3f}"]
        rows += [f"  input of {n:<24} cos(R_l, a_l) = {v:.3f}" for n, v in zip(self.layers, self.layer_means())]
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def input_alignment(
    model: nn.Module,
    x: torch.Tensor,
    target: Any = None,
    method: Any = "gradient",
    baseline: float | torch.Tensor = 0.0,
    layerwise: bool = True,
    quantity: str = "auto",
    **params: Any,
) -> AlignmentResult:
    """Cosine between the attribution and ``x - baseline`` per sample, and between relevance and
    activation at every layer's input (``layerwise=True``). See the module docstring for the formulas.

    ``method``: a registered name (``params`` are its parameters), a method object, or a ``(name, params)``
    pair. The model is run in eval mode and handed back unchanged.
    """
    check_model(model)
    x = check_input(x)
    base = check_baseline(baseline, x)
    m = resolve_method((method, params) if params and isinstance(method, str) else method)
    with analysis_state(model):
        t = check_target_cheap(model, x, target)
        layers = param_layers(model, x) if layerwise else []
        with Recorder(dict(layers), root=model) as rec:
            a = run_method(m.method, model, x, t)
    per_sample = cosine_rows(a, x - base).numpy()
    kind = relevance_quantity(quantity, a, rec, m.method)
    lw = np.full((len(layers), len(x)), np.nan)
    for i, (name, _) in enumerate(layers):
        if name in rec.rels and rec.rels[name].shape == rec.acts[name].shape and rec.acts[name].shape[0] == len(x):
            act, sig = rec.acts[name], rec.rels[name]
            lw[i] = cosine_rows(act * sig if kind == "relevance" else sig, act).numpy()
    return AlignmentResult(m.label, per_sample, [n for n, _ in layers], lw, kind)
