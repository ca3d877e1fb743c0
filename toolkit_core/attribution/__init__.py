"""Attribution: run an attribution method on a model, with validated inputs and a preserved model.

``attribute(model, x, target, method="gbp", **params)`` is the public entry point. The
modified-backprop engine (:mod:`.engine`) with its rules (:mod:`.rules`), composites
(:mod:`.composites`) and canonizers (:mod:`.canonizers`) backs the rule plugins (gbp, deconvnet,
rectgrad, lrp, dtd). Layer-wise relevance: :func:`layerwise`. Rules and composites by name::

    from toolkit_core.attribution import get_rule, get_composite, list_rules, list_composites
    get_composite("epsilon_plus_flat")     # {'first': 'lrp_flat', 'conv': 'lrp_zplus', ...}
    rule = get_rule("lrp_gamma", gamma=0.5)
    attribute(model, x, 3, method="lrp", composite={"first": "lrp_flat", "conv": rule})
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .inputs import check_input, logits_of, resolve_target

__all__ = [
    "attribute", "run_attribution", "check_input", "logits_of", "resolve_target", "layerwise", "get_rule",
    "get_composite", "list_rules", "list_composites", "ModifiedBackprop", "LayerwiseResult",
    "UnsupportedLayerError", "run_engine",
]

_LAZY = {
    "get_rule": "composites", "get_composite": "composites", "list_rules": "composites",
    "list_composites": "composites", "ModifiedBackprop": "base", "LayerwiseResult": "engine",
    "UnsupportedLayerError": "engine", "run_engine": "engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_attribution(method, model: nn.Module, x: torch.Tensor, target: Any = None,
                    batch_size: int | None = None) -> torch.Tensor:
    """Validate ``x``, call ``method.attribute`` and hand the model and ``x`` back unchanged.

    ``target`` reaches the method as given (``None``, int, list or tensor); the method resolves it
    against the logits of its own forward pass with :func:`resolve_target` (which also checks the
    range), so no extra forward pass is spent on validation. ``batch_size``: the method runs on chunks
    of that many samples (``None``: sized to the device, see :mod:`toolkit_core.chunking`).
    Attribution always runs in float32: autocast set by the caller is switched off inside
    (:func:`toolkit_core.precision.full_precision`; LRP/DTD divide by pre-activations).
    """
    from ..chunking import chunks
    from ..modelstate import check_model, guarded, warn_if_train_mode
    from ..precision import full_precision

    check_model(model)
    x = check_input(x)
    warn_if_train_mode(model, f"attribution with {method.name}")
    # always float32: a caller's autocast does not reach the rules (toolkit_core.precision)
    with full_precision(x.device), guarded(model, (x,)):
        parts = [method.attribute(model, xc, tc) for xc, tc in chunks(x, target, batch_size)]
    result = parts[0] if len(parts) == 1 else torch.cat(parts)
    if not isinstance(result, torch.Tensor) or result.shape != x.shape:
        raise RuntimeError(
            f"{method.name} returned {getattr(result, 'shape', type(result))} for input "
            f"{tuple(x.shape)}; attribution methods must return a map of the input's shape"
        )
    return result


def attribute(
    model: nn.Module, x: torch.Tensor, target: Any = None, method: Any = None, *, batch_size: int | None = None,
    **params: Any,
) -> torch.Tensor:
    """Attribution map of ``model``'s ``target`` logit with respect to ``x`` (same shape as ``x``).

    ``target``: an int, a list or tensor of class indices, or ``None`` for the predicted class.
    ``method``: a registered attribution method name (``torchtrust list --kind attribution``) or an
    :class:`~toolkit_core.methods.AttributionMethod` object; ``params`` are its parameters.
    ``batch_size``: samples per chunk (``None``: sized to the device), so a large ``x`` never holds the
    activations of the whole batch at once.
    """
    from ..catalog import resolve

    if method is None:
        raise TypeError("attribute() needs method=: a registered attribution method name "
                        "(`torchtrust list --kind attribution`) or an AttributionMethod object")
    return resolve(method, kind="attribution", **params)(model, x, target, batch_size=batch_size)


def layerwise(
    model: nn.Module, x: torch.Tensor, target: Any = None, method: Any = None, record: Any = True,
    inject: Any = None, inject_kind: str = "relevance", **params: Any,
):
    """Input relevance plus the relevance ``R = z * c`` at the output of recorded layers.

    ``method`` (required): a modified-backprop method (name or object: gbp, deconvnet, rectgrad, lrp, dtd)
    or a method whose class sets ``plain_gradient_times_input`` (gradient, input x gradient: plain
    autograd through the same engine).
    ``record``: ``True`` (every conv/dense/BatchNorm layer) or a list of module names (containers
    such as ``"layer1"`` allowed). ``inject={name: R}`` starts the backward pass at that layer with
    relevance ``R`` (``inject_kind="signal"``: with the signal ``c``) instead of at the target logit.
    Returns a :class:`~toolkit_core.attribution.engine.LayerwiseResult` with ``attribution``,
    ``relevance`` and ``signal`` dicts, ``logits`` and ``target``.
    """
    from ..catalog import resolve
    from ..modelstate import check_model, guarded
    from ..precision import full_precision
    from .base import ModifiedBackprop
    from .engine import run_engine
    from .rules import Gradient

    check_model(model)
    x = check_input(x)
    if method is None:
        raise TypeError("layerwise() needs method=: a modified-backprop or plain-gradient attribution method")
    m = resolve(method, kind="attribution", **params)
    times_input = type(m).plain_gradient_times_input
    if times_input is not None:
        with full_precision(x.device), guarded(model, (x,)):
            return run_engine(
                model, x, target, lambda name, module: Gradient.name, method=m.name,
                multiply_input=times_input, record=record, inject=inject, inject_kind=inject_kind,
            )
    if not isinstance(m, ModifiedBackprop):
        raise TypeError(f"layer-wise relevance needs a modified-backprop method, got {m.name!r}")
    with full_precision(x.device), guarded(model, (x,)):
        return m.layerwise(model, x, target, record=record, inject=inject, inject_kind=inject_kind)
