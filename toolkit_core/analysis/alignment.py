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

Two references sit beside the alignment of the map, because a map of the form ``A = x * c`` with
``c >= 0`` is aligned with ``x`` *by construction* (for ``x ~ U(0, 1)`` and ``c = x``,
``cos(x^2, x) ~ 0.97``):

* ``signal``: ``cos(vec(c), vec(x - x0))``, the alignment of the back-propagated signal ``c`` itself
  (the quantity whose construction the seed paper explains); for maps ``A = c`` it equals the map's.
* ``null``: the same cosine for a map built the method's way from a *random sign-free* signal with the
  same statistics, ``c_null = permute(|c|)`` (a random permutation, per sample, of ``|c|`` over the input
  elements): ``cos(x * c_null, x - x0)`` for maps ``x * c``, ``cos(c_null, x - x0)`` for maps ``c``;
  the mean over ``n_null`` permutations. An alignment not above its null says nothing beyond the form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import (
    INPUT,
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
    signal: np.ndarray | None = None  # (B,) cos(c, x - x0) of the signal at the input
    null: np.ndarray | None = None  # (B,) cos of the same-form map from a random sign-free c (mean over permutations)

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_sample))

    @property
    def signal_mean(self) -> float:
        return float(np.mean(self.signal)) if self.signal is not None else float("nan")

    @property
    def null_mean(self) -> float:
        return float(np.mean(self.null)) if self.null is not None else float("nan")

    def layer_means(self) -> list[float]:
        return [float(np.nanmean(r)) if np.isfinite(r).any() else float("nan") for r in self.layerwise]

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), 6)

        return {
            "test": "input_alignment",
            "method": self.method,
            "mean": clean(self.mean),
            "signal_mean": clean(self.signal_mean),
            "null_mean": clean(self.null_mean),
            "map_form": "x * c" if self.quantity == "relevance" else "c",
            "per_sample": [clean(v) for v in self.per_sample],
            "layers": self.layers,
            "layerwise_mean": [clean(v) for v in self.layer_means()],
            "layerwise_quantity": self.quantity,
        }

    def table(self) -> str:
        rows = [f"input alignment of {self.method}: mean cos(A, x - x0) = {self.mean:.3f} (null, random sign-free "
                f"c: {self.null_mean:.3f}); signal cos(c, x - x0) = {self.signal_mean:.3f}"]
        rows += [f"  input of {n:<24} cos(R_l, a_l) = {v:.3f}" for n, v in zip(self.layers, self.layer_means())]
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def input_alignment(
    model: nn.Module,
    x: torch.Tensor,
    target: Any = None,
    method: Any = None,
    baseline: float | torch.Tensor = 0.0,
    layerwise: bool = True,
    quantity: str = "auto",
    n_null: int = 8,
    seed: int = 0,
    **params: Any,
) -> AlignmentResult:
    """Cosine between the attribution and ``x - baseline`` per sample, and between relevance and
    activation at every layer's input (``layerwise=True``). See the module docstring for the formulas.

    ``method``: a registered name (``params`` are its parameters), a method object, or a ``(name, params)``
    pair. The model is run in eval mode and handed back unchanged. ``n_null`` permutations (seeded by
    ``seed``) make the null reference (0: none).
    """
    check_model(model)
    x = check_input(x)
    base = check_baseline(baseline, x)
    m = resolve_method((method, params) if params and isinstance(method, str) else method)
    with analysis_state(model):
        t = check_target_cheap(model, x, target)
        layers = param_layers(model, x) if layerwise else []
        with Recorder(dict(layers), at="input", root=model) as rec:
            a = run_method(m.method, model, x, t)
    per_sample = cosine_rows(a, x - base).numpy()
    kind = relevance_quantity(quantity, a, rec, m.method)
    c = input_signal(a, x, rec, kind)
    signal = cosine_rows(c, x - base).numpy()
    null = null_alignment(c, x, base, kind, n_null, seed) if n_null > 0 else None
    lw = np.full((len(layers), len(x)), np.nan)
    for i, (name, _) in enumerate(layers):
        if name in rec.rels and rec.rels[name].shape == rec.acts[name].shape and rec.acts[name].shape[0] == len(x):
            act, sig = rec.acts[name], rec.rels[name]
            lw[i] = cosine_rows(act * sig if kind == "relevance" else sig, act).numpy()
    return AlignmentResult(m.label, per_sample, [n for n, _ in layers], lw, kind, signal, null)


def input_signal(a: torch.Tensor, x: torch.Tensor, rec: Recorder, kind: str) -> torch.Tensor:
    """The signal ``c`` at the input: recorded by autograd when available; else ``A`` for maps ``c`` and
    ``A / x`` (0 where ``x = 0``) for maps ``x * c`` (rules that write the input relevance directly)."""
    c = rec.rels.get(INPUT)
    if c is not None and c.shape == a.shape:
        return c.to(a.dtype)
    if kind != "relevance":
        return a
    safe = torch.where(x != 0, x, torch.ones_like(x))
    return torch.where(x != 0, a / safe, torch.zeros_like(a))


def null_alignment(c: torch.Tensor, x: torch.Tensor, base: torch.Tensor, kind: str, n: int, seed: int) -> np.ndarray:
    """Mean over ``n`` permutations of ``cos(map(c_null), x - x0)``, ``c_null = permute(|c|)`` per sample."""
    g = torch.Generator().manual_seed(seed)
    flat = c.detach().abs().flatten(1)
    total = torch.zeros(len(c), dtype=torch.float64)
    for _ in range(n):
        perm = torch.argsort(torch.rand(flat.shape, generator=g), dim=1)
        c_null = flat.gather(1, perm.to(flat.device)).view_as(c)
        m = x * c_null if kind == "relevance" else c_null
        total += cosine_rows(m, x - base).cpu()
    return (total / n).numpy()
