"""Attribution: run an attribution method on a model, with validated inputs and a preserved model.

``attribute(model, x, target, method="gbp", **params)`` is the public entry point.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..modelstate import preserved
from .inputs import check_input, logits_of, resolve_target

__all__ = ["attribute", "run_attribution", "check_input", "logits_of", "resolve_target"]


def run_attribution(method, model: nn.Module, x: torch.Tensor, target: Any = None) -> torch.Tensor:
    """Validate ``x``, call ``method.attribute`` and hand the model back unchanged.

    ``target`` reaches the method as given (``None``, int, list or tensor); the method resolves it
    against the logits of its own forward pass with :func:`resolve_target` (which also checks the
    range), so no extra forward pass is spent on validation.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_input(x)
    with preserved(model):
        result = method.attribute(model, x, target)
    if not isinstance(result, torch.Tensor) or result.shape != x.shape:
        raise RuntimeError(
            f"{method.name} returned {getattr(result, 'shape', type(result))} for input "
            f"{tuple(x.shape)}; attribution methods must return a map of the input's shape"
        )
    return result


def attribute(
    model: nn.Module, x: torch.Tensor, target: Any = None, method: Any = "gbp", **params: Any
) -> torch.Tensor:
    """Attribution map of ``model``'s ``target`` logit with respect to ``x`` (same shape as ``x``).

    ``target``: an int, a list or tensor of class indices, or ``None`` for the predicted class.
    ``method``: a registered attribution method name (``torchtrust list --kind attribution``) or an
    :class:`~toolkit_core.methods.AttributionMethod` object; ``params`` are its parameters.
    """
    from ..catalog import resolve

    return resolve(method, kind="attribution", **params)(model, x, target)
