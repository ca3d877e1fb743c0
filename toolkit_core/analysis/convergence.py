"""Cosine similarity convergence: does a rule collapse to rank one? (Sixt, Granz & Landgraf 2020,
"When Explanations Lie: Why Many Modified BP Attributions Fail", arXiv:1912.09818.)

Protocol: for an input ``x``, draw ``n`` random relevance vectors ``r_1..r_n ~ N(0, I)`` at the output of
layer ``L`` (``inject_at``), back-propagate each with the method's rule, and read the vectors
``R_l^(i)`` that arrive at the input of every layer ``l <= L``. At each layer report

    CSC_l = median_{i < j} | cos(R_l^(i), R_l^(j)) |

(pooled over the pairs of every sample), and the same for the method's output maps (level
``"attribution"``: exactly what a user sees, including relevance that a first-layer rule such as
flat or zB writes directly). Near 1: whatever relevance is injected, the rule maps it to
(nearly) the same direction -- the explanation no longer depends on the layers above ``L``. The plain
gradient is a linear map ``J^T r`` and stays well below 1; GBP and LRP z+ (alpha1-beta0) converge.

What is injected is what the method propagates: for methods whose map is a signal ``c`` (gradient, GBP,
deconvnet) the signal ``c_L = r``; for methods whose map is a relevance ``x * c`` (LRP, DTD, input x
gradient, RectGrad) the *relevance* ``R_L = r``: autograd carries ``c = R / z`` there, so the injected
signal is ``c_L = r / z_L`` with ``z_L`` the layer's output (0 where ``z_L = 0``), exactly what the
attribution engine does with ``inject_kind="relevance"``.
Injecting ``r`` as the signal of an LRP method would inject the relevance ``z_L * r`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import (
    Injector,
    Recorder,
    analysis_state,
    check_input,
    check_model,
    forward_logits,
    param_layers,
    relevance_quantity,
    resolve_method,
    run_method,
)

__all__ = ["ATTRIBUTION", "ConvergenceResult", "cosine_similarity_convergence"]

#: name of the last level: the method's output map (the relevance that reaches the input)
ATTRIBUTION = "attribution"


@dataclass
class ConvergenceResult:
    """``layers[0]`` is the layer relevance was injected at; ``median[k]`` the CSC at the input of ``layers[k]``,
    going down; the last level, ``"attribution"``, compares the method's output maps."""

    method: str
    inject_at: str
    n: int
    layers: list[str]
    median: list[float]
    per_sample: np.ndarray  # (n_layers, B) medians per sample
    quantity: str = "signal"

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if not math.isfinite(v) else round(float(v), 6)

        return {
            "test": "cosine_similarity_convergence",
            "method": self.method,
            "inject_at": self.inject_at,
            "n": self.n,
            "layers": self.layers,
            "median_abs_cosine": [clean(v) for v in self.median],
            "quantity": self.quantity,
        }

    def table(self) -> str:
        rows = [f"cosine similarity convergence of {self.method} (n={self.n} vectors injected at {self.inject_at})"]
        rows += [f"  {'' if n == ATTRIBUTION else 'input of '}{n:<24} median |cos| = {v:.3f}"
                 for n, v in zip(self.layers, self.median)]
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


class RelevanceInjector(Injector):
    """Inject relevance ``r`` at ``module``'s output for a method that carries ``c = R / z``: the signal
    ``r / z`` (0 where ``z = 0``) replaces the incoming one (``z``: the module's output in the last forward)."""

    def __init__(self, module: nn.Module, relevance: torch.Tensor):
        super().__init__(module, relevance, kind="relevance")


def _method_kind(quantity: str, method: Any, model: nn.Module, x: torch.Tensor, layers: dict) -> str:
    """``"signal"`` or ``"relevance"`` before injecting: declared by the method, else from one plain run."""
    if quantity in ("signal", "relevance"):
        return quantity
    declared = getattr(method, "multiply_input", None)
    if quantity == "auto" and isinstance(declared, bool):
        return "relevance" if declared else "signal"
    with Recorder(layers, at="input", root=model) as rec:
        amap = run_method(method, model, x, 0)
    return relevance_quantity(quantity, amap, rec, method)


def _pairwise_abs_cos(v: torch.Tensor) -> torch.Tensor:
    v = v.flatten(1).double()
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    c = (v @ v.T).abs()
    iu = torch.triu_indices(len(v), len(v), offset=1)
    return c[iu[0], iu[1]]


def cosine_similarity_convergence(
    model: nn.Module,
    method: Any,
    x: torch.Tensor,
    inject_at: str | nn.Module | None = None,
    n: int = 16,
    seed: int = 0,
    quantity: str = "auto",
    **params: Any,
) -> ConvergenceResult:
    """Median absolute pairwise cosine similarity of back-propagated random relevance, per layer.

    Args:
        model: classifier returning ``(B, C)`` logits (handed back unchanged).
        method: registered name (``params`` are its parameters), method object, or ``(name, params)``.
        x: ``(B, ...)`` inputs; each sample gets its own ``n`` random vectors (batch of ``n`` copies).
        inject_at: name (or module) of the layer at whose *output* relevance is injected; default: the
            last layer with parameters (the logits layer).
        n: number of random relevance vectors per sample (>= 2).
        seed: seed of the Gaussian draws.
        quantity: inject and compare the back-propagated signal ``c_l`` (``"signal"``) or the relevance
            ``a_l * c_l`` (``"relevance"``); ``"auto"`` uses the relevance for methods whose map is ``x * c(x)``.
    """
    check_model(model)
    x = check_input(x)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (pairs of vectors are compared), got {n!r}")
    m = resolve_method((method, params) if params and isinstance(method, str) else method)
    with analysis_state(model):
        forward_logits(model, x[:1])
        layers = param_layers(model, x)
        names = [nm for nm, _ in layers]
        by_module = {id(mod): nm for nm, mod in layers}
        if inject_at is None:
            inj = names[-1]
        elif isinstance(inject_at, nn.Module):
            inj = by_module.get(id(inject_at)) or next((k for k, v in model.named_modules() if v is inject_at), None)
            if inj is None:
                raise ValueError("inject_at is a module that is not part of the model")
        elif isinstance(inject_at, str):
            inj = inject_at
        else:
            raise TypeError(f"inject_at must be a layer name, a module or None, got {type(inject_at).__name__}")
        mods = dict(model.named_modules())
        if inj not in mods:
            raise ValueError(f"no layer named {inj!r}; layers with parameters, in forward order: {names}")
        inj_mod = mods[inj]
        # layers at and below the injection point, in forward order
        if inj in names:
            below = names[: names.index(inj) + 1]
        else:
            out_order = _first_call(model, x, {**dict(layers), inj: inj_mod})
            below = [nm for nm in out_order[: out_order.index(inj)] if nm in names]
        if not below:
            raise ValueError(f"no layer with parameters at or below {inj!r}; choose a higher layer")
        out_shape = _output_shape(model, x[:1], inj_mod)
        g = torch.Generator().manual_seed(seed)
        meds = np.full((len(below) + 1, len(x)), np.nan)
        pooled: list[list[torch.Tensor]] = [[] for _ in range(len(below) + 1)]
        rec_mods = {nm: mods[nm] for nm in below}
        kind = _method_kind(quantity, m.method, model, x[:1], rec_mods)
        inject = RelevanceInjector if kind == "relevance" else Injector
        for i in range(len(x)):
            xi = x[i : i + 1].expand(n, *x.shape[1:]).contiguous()
            r = torch.randn((n, *out_shape[1:]), generator=g).to(x.device, x.dtype)
            with Recorder(rec_mods, at="input", root=model) as rec, inject(inj_mod, r) as injector:
                amap = run_method(m.method, model, xi, 0)
            if not injector.fired:
                raise RuntimeError(
                    f"{m.label}: no backward pass reached layer {inj!r}, so relevance could not be injected there; "
                    "the method may not back-propagate through autograd"
                )
            for k, nm in enumerate(below):
                if nm in rec.rels and rec.rels[nm].shape[0] == n:
                    v = rec.rels[nm] * rec.acts[nm] if kind == "relevance" else rec.rels[nm]
                    c = _pairwise_abs_cos(v)
                    pooled[k].append(c)
                    meds[k, i] = float(c.median())
            c = _pairwise_abs_cos(amap)  # the method's own output: the relevance that reaches the input
            pooled[-1].append(c)
            meds[-1, i] = float(c.median())
    order = list(range(len(below)))[::-1] + [len(below)]  # from the injection point down to the input
    median = [float(torch.cat(pooled[k]).median()) if pooled[k] else float("nan") for k in order]
    names = [*below, ATTRIBUTION]
    return ConvergenceResult(m.label, inj, n, [names[k] for k in order], median, meds[order], kind)


def _first_call(model: nn.Module, x: torch.Tensor, modules: dict[str, nn.Module]) -> list[str]:
    from ._common import trace_order

    return trace_order(model, x, modules)


def _output_shape(model: nn.Module, x: torch.Tensor, module: nn.Module) -> tuple[int, ...]:
    shape: list[tuple[int, ...]] = []
    h = module.register_forward_hook(lambda _m, _i, o: shape.append(tuple(o.shape)) if not shape else None)
    try:
        forward_logits(model, x)
    finally:
        h.remove()
    if not shape:
        raise ValueError("the injection layer does not run in the model's forward pass")
    return shape[0]
