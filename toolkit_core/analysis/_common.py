"""Shared plumbing of the analysis measures: argument checks, method resolution, layer tracing,
block randomization, and the hooks that read (or inject) the relevance flowing backwards.

The relevance hooks are the attribution engine's (:mod:`toolkit_core.attribution.probes`); they work
for every attribution method that back-propagates with autograd (plain gradients, module backward
hooks, custom autograd functions, the engine's rules): a :class:`Recorder` with ``at="input"`` reads
``d(.)/d a_l`` -- the quantity the rule propagates -- at a layer's input with a tensor hook, and an
:class:`Injector` replaces the quantity arriving at a layer's output with a full backward *pre*-hook
(which also feeds any backward hook the method itself registered on that layer).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..attribution.canonizers import out_of_place
from ..attribution.inputs import check_input, logits_of, resolve_target
from ..attribution.probes import INPUT, Injector, Recorder
from ..methods import AttributionMethod
from ..modelstate import model_device, preserved

MethodSpec = Any  # a name, an AttributionMethod, a (name, params) pair, or {"method": name, **params}


# --------------------------------------------------------------------------- arguments


def check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``x`` (no grad), turning shape errors into an error that names the input shape."""
    try:
        with torch.no_grad():
            return logits_of(model, x)
    except (RuntimeError, ValueError) as e:
        if "must return logits" in str(e):
            raise
        raise ValueError(
            f"the model could not process x of shape {tuple(x.shape)}: {e}. Check that x has the "
            "(B, C, H, W) shape and channel count the model expects"
        ) from e


def check_target(model: nn.Module, x: torch.Tensor, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, target as a (B,) long tensor) -- ``None`` means the model's predicted class."""
    logits = forward_logits(model, x)
    return logits, resolve_target(target, logits)


def check_target_cheap(model: nn.Module, x: torch.Tensor, target: Any) -> Any:
    """Validate ``x`` and ``target`` with a one-sample forward pass; return ``target`` for the method.

    ``None`` stays ``None`` (the method explains its own predicted class); anything else is checked
    against the batch size and the number of classes and returned as a (B,) long tensor.
    """
    logits = forward_logits(model, x[:1])
    if target is None:
        return None
    return resolve_target(target, logits.new_zeros(x.shape[0], logits.shape[1]))


def check_baseline(baseline: Any, x: torch.Tensor) -> torch.Tensor:
    """A baseline broadcastable to ``x``: a number, or a tensor of x's shape, of x.shape[1:], or (1, ...)."""
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, torch.Tensor)):
        raise TypeError(f"baseline must be a number or a tensor, got {type(baseline).__name__}")
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        out = torch.broadcast_to(b, x.shape)
    except RuntimeError as e:
        raise ValueError(
            f"baseline of shape {tuple(b.shape)} does not match x of shape {tuple(x.shape)}; pass a number, "
            f"a tensor of shape {tuple(x.shape)} or {tuple(x.shape[1:])}"
        ) from e
    return out


# --------------------------------------------------------------------------- methods


@dataclass
class ResolvedMethod:
    label: str
    method: AttributionMethod
    params: dict[str, Any] = field(default_factory=dict)


def resolve_method(spec: MethodSpec, label: str | None = None) -> ResolvedMethod:
    """Turn a method spec into an :class:`AttributionMethod` (unknown names raise immediately)."""
    from ..catalog import resolve

    if spec is None:
        raise TypeError("an attribution method is required: a registered name (`torchtrust list --kind "
                        "attribution`), a method object, (name, params) or {'name': ..., **params}")
    if isinstance(spec, dict):  # a dict may carry the label beside the method and its parameters
        spec = dict(spec)
        label = spec.pop("label", label)
    method = resolve(spec, kind="attribution")
    params = {} if isinstance(spec, AttributionMethod) else _given_params(spec)
    if label is None:
        label = method.name
        extra = ",".join(f"{k}={v}" for k, v in params.items())
        if extra:
            label = f"{label}({extra})"
    return ResolvedMethod(label, method, params)


def _given_params(spec: Any) -> dict[str, Any]:
    """The parameters written in a ``(name, params)`` or ``{"name": ..., **params}`` spec."""
    if isinstance(spec, tuple):
        return dict(spec[1])
    if isinstance(spec, dict):
        return {k: v for k, v in spec.items() if k not in ("name", "method")}
    return {}


def resolve_methods(methods: Any) -> list[ResolvedMethod]:
    """A list of method specs (or a dict label -> spec, or a single spec) -> resolved methods."""
    if methods is None:
        raise TypeError("methods is required: a list of attribution method names or objects")
    single_pair = isinstance(methods, tuple) and len(methods) == 2 and isinstance(methods[1], dict)
    one_dict = isinstance(methods, dict) and ("method" in methods or "name" in methods)
    if isinstance(methods, (str, AttributionMethod)) or single_pair or one_dict:
        methods = [methods]
    if isinstance(methods, dict):
        out = [resolve_method(spec, label=label) for label, spec in methods.items()]
    else:
        if not isinstance(methods, Sequence) or isinstance(methods, str):
            raise TypeError(f"methods must be a list of method names or objects, got {type(methods).__name__}")
        out = [resolve_method(spec) for spec in methods]
    if not out:
        raise ValueError("methods is empty; pass at least one attribution method "
                         "(`torchtrust list --kind attribution`)")
    labels = [m.label for m in out]
    dup = sorted({label for label in labels if labels.count(label) > 1})
    if dup:
        raise ValueError(f"method labels must be unique, got duplicates {dup}; pass a dict label -> method")
    return out


def run_method(method: MethodSpec, model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    """Attribution of ``target`` (no model-state bookkeeping: callers run inside :func:`analysis_state`);
    ``method`` is an AttributionMethod or anything :func:`toolkit_core.catalog.resolve` reads."""
    if not isinstance(method, AttributionMethod):
        from ..catalog import resolve

        method = resolve(method, kind="attribution")
    r = method.attribute(model, x, target)
    if not isinstance(r, torch.Tensor) or r.shape != x.shape:
        raise RuntimeError(
            f"{method.name} returned {getattr(r, 'shape', type(r))} for input {tuple(x.shape)}; "
            "attribution methods must return a map of the input's shape"
        )
    return r.detach()


# --------------------------------------------------------------------------- model state


@contextlib.contextmanager
def analysis_state(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, no in-place activations, every mode/flag/hook restored on exit (also on error)."""
    with preserved(model, mode=False), out_of_place(model):
        yield model


# --------------------------------------------------------------------------- layers and blocks


def has_direct_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def trace_order(model: nn.Module, x: torch.Tensor, modules: dict[str, nn.Module]) -> list[str]:
    """Names of ``modules`` in the order their forward is first called on ``x[:1]``."""
    order: list[str] = []
    handles = []
    for name, m in modules.items():
        def hook(_m, _i, _o, name=name):
            if name not in order:
                order.append(name)
        handles.append(m.register_forward_hook(hook))
    try:
        forward_logits(model, x[:1])
    finally:
        for h in handles:
            h.remove()
    return order


def param_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Leaf-level layers that own parameters (Conv, Linear, BatchNorm, ...) in forward order."""
    mods = {n: m for n, m in model.named_modules() if n and has_direct_params(m)}
    order = trace_order(model, x, mods)
    return [(n, mods[n]) for n in order]


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def find_blocks(model: nn.Module, x: torch.Tensor) -> list[tuple[str, list[str]]]:
    """Randomization blocks, from the logits downwards: ``[(block_name, [module names]), ...]``.

    The top-level children that own parameters, with plain containers (``Sequential``, ``ModuleList``,
    ``ModuleDict``) expanded recursively into their own children that own parameters; a block made only
    of normalization layers is merged into the block that runs just before it (conv + BN randomize
    together). Order is the forward order traced on ``x[:1]``, reversed.
    """

    def expand(prefix: str, m: nn.Module) -> list[tuple[str, nn.Module]]:
        out = []
        for name, child in m.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if not any(True for _ in child.parameters()):
                continue
            if isinstance(child, _CONTAINERS):
                out.extend(expand(full, child))
            else:
                out.append((full, child))
        return out

    if has_direct_params(model):
        raise ValueError(
            "the model owns parameters directly (not in child modules), so blocks cannot be found "
            "automatically; pass blocks=[...] with module names"
        )
    cands = dict(expand("", model))
    order = trace_order(model, x, cands)
    blocks: list[tuple[str, list[str]]] = []
    for name in order:
        m = cands[name]
        if isinstance(m, _NORMS) and blocks:
            blocks[-1][1].append(name)
        else:
            blocks.append((name, [name]))
    if not blocks:
        raise ValueError("found no module with parameters that runs in forward; pass blocks=[...]")
    return blocks[::-1]


def check_blocks(model: nn.Module, blocks: Sequence[Any]) -> list[tuple[str, list[str]]]:
    """User-given blocks: names (or lists of names) of sub-modules, top (logits) first."""
    names = dict(model.named_modules())
    out = []
    if isinstance(blocks, str) or not isinstance(blocks, Sequence) or not blocks:
        raise ValueError("blocks must be a non-empty list of module names (top block first), e.g. ['head', 'fc']")
    for b in blocks:
        group = [b] if isinstance(b, str) else list(b)
        for n in group:
            if n not in names:
                close = [k for k in names if k and n.split(".")[-1] in k][:5]
                raise ValueError(f"no sub-module named {n!r} in the model" + (f"; did you mean {close}?" if close else
                                                                             "; see model.named_modules()"))
            if not any(True for _ in names[n].parameters()):
                raise ValueError(f"module {n!r} has no parameters to randomize")
        out.append(("+".join(group), group))
    return out


@torch.no_grad()
def randomize_(module: nn.Module, generator_seed: int) -> None:
    """Re-initialize every parameter of ``module`` in place, seeded.

    Modules with ``reset_parameters`` use their own default initializer (as Adebayo et al. re-initialize
    with the original initialization scheme); other parameters are redrawn from N(0, std(p)^2).
    Running statistics of normalization layers are kept.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        for m in module.modules():
            if not has_direct_params(m):
                continue
            if hasattr(m, "reset_parameters") and not isinstance(m, _NORMS):
                m.reset_parameters()
            else:
                for p in m.parameters(recurse=False):
                    std = float(p.std()) if p.numel() > 1 else 1.0
                    p.normal_(0.0, std if std > 0 else 1.0)


# --------------------------------------------------------------------------- relevance hooks
# Recorder (at="input", root=model) and Injector are the attribution engine's (attribution/probes.py).


def relevance_quantity(quantity: str, attribution: torch.Tensor, rec: Recorder, method: Any = None) -> str:
    """``"signal"`` or ``"relevance"``: what to call the relevance at a layer, given the method's output.

    Autograd carries the *signal* ``c`` (the gradient, or GBP's modified gradient, or the LRP engine's
    ``c = R / z``). Methods whose final map is ``x * c(x)`` (input x gradient, LRP, DTD, RectGrad)
    report relevance ``R = a * c``; methods whose map is ``c(x)`` itself (gradient, GBP, deconvnet)
    report the signal. ``quantity="auto"`` decides by comparing the method's map with ``c`` and
    ``x * c`` at the model input (methods of the modified-backprop engine declare it: ``multiply_input``).
    """
    if quantity in ("signal", "relevance"):
        return quantity
    if quantity != "auto":
        raise ValueError(f"quantity must be 'auto', 'signal' or 'relevance', got {quantity!r}")
    declared = getattr(method, "multiply_input", None)
    if isinstance(declared, bool):
        return "relevance" if declared else "signal"
    c, x = rec.rels.get(INPUT), rec.acts.get(INPUT)
    if c is None or c.shape != attribution.shape:
        return "signal"
    cos_sig = float(cosine_rows(attribution.reshape(1, -1), c.reshape(1, -1)))
    cos_rel = float(cosine_rows(attribution.reshape(1, -1), (x * c).reshape(1, -1)))
    return "relevance" if cos_rel > cos_sig + 1e-6 else "signal"


def cosine_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-row cosine similarity of two (B, ...) tensors; 0 where either row is all zeros."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(eps)
    return torch.where((na > 0) & (nb > 0), cos, torch.zeros_like(cos))


def deepcopy_model(model: nn.Module) -> nn.Module:
    """A detached copy (hooks included) so randomization never touches the caller's model."""
    return copy.deepcopy(model)


__all__ = [
    "INPUT", "Injector", "Recorder", "ResolvedMethod", "analysis_state", "check_baseline", "check_blocks",
    "check_input", "check_model", "check_target", "check_target_cheap", "cosine_rows", "deepcopy_model", "find_blocks",
    "forward_logits",
    "model_device", "param_layers", "randomize_", "relevance_quantity", "resolve_method",
    "resolve_methods", "run_method", "trace_order",
]
