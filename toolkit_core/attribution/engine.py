"""The modified-backprop engine: one forward pass, one modified backward pass.

How it works (see :mod:`.rules` for the signal convention ``c = R / z``):

1. Every leaf module is assigned a rule by the method's composite (:mod:`.composites`). Modules
   whose rule is the plain gradient (pooling, flatten, dropout, ReLU under LRP, every conv under GBP)
   are not touched. An unknown layer type raises :class:`UnsupportedLayerError`.
2. Each ruled module gets a forward pre-hook that switches autograd off for its own forward pass and
   a forward hook that wraps the output in a custom autograd ``Function`` whose backward is the
   rule's. So the layer's forward runs once, no autograd graph is built for it, and its backward is
   exactly one rule evaluation (for LRP-epsilon: an elementwise scale and the usual transposed conv).
3. BatchNorm layers that directly follow a conv/dense layer are folded into it on the fly
   (:mod:`.canonizers`). In-place activations stay in place when their rule only needs the output
   (``Rule.keeps_inplace``: the ReLU masks of LRP, GBP, deconvnet, RectGrad) and are made
   out-of-place otherwise. Max pools run with ``return_indices=True`` and keep only their argmax
   (int32) for the backward pass (:class:`.rules.WinnerTakesAll`, the plain gradient). Together
   with the one-byte ReLU masks this keeps every method's memory near the plain gradient's.
4. The backward pass starts from ``onehot(target)`` at the logits (``R_out = onehot * logits``).
   The attribution is ``x * c(x)`` (LRP, DTD, RectGrad) or ``c(x)`` (GBP, deconvnet), plus the
   relevance of ``produces_relevance`` rules on layers that read the input.

The model comes back unchanged: :func:`toolkit_core.modelstate.preserved` restores modes, flags and
hooks; in-place and ``return_indices`` flags are restored by :func:`.canonizers.flag_set`; weights
are never written; the input is copied before the forward pass, so no in-place layer can write to it.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..modelstate import preserved
from .canonizers import batchnorm_pairs, flag_set, fold, is_leaf, out_of_place
from .composites import PASS_THROUGH, POOLS
from .inputs import logits_of, resolve_target
from .layers import BN_TYPES, CONV_TYPES, make_layer
from .rules import MAX_POOL_DIMS, Gradient, Rule, WinnerTakesAll, stabilized_divide

__all__ = ["UnsupportedLayerError", "LayerwiseResult", "run_engine"]

LINEAR_TYPES = (*CONV_TYPES, nn.Linear, *BN_TYPES)
MAX_POOLS = tuple(MAX_POOL_DIMS)
_WINNER_TAKES_ALL = WinnerTakesAll()


class UnsupportedLayerError(TypeError):
    """A layer of the model has no rule in the method's composite."""


@dataclasses.dataclass
class LayerwiseResult:
    """What :func:`run_engine` returns.

    ``attribution``: relevance at the input (shape of ``x``). ``relevance[name]``: relevance at the
    output of each recorded layer, ``R = z * c`` (a module called several times gets ``name:1``,
    ``name:2`` ... for the later calls). ``signal[name]``: the back-propagated signal ``c`` there.
    ``logits``, ``target``: of the forward pass.
    """

    attribution: Tensor
    logits: Tensor
    target: Tensor
    relevance: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    signal: dict[str, Tensor] = dataclasses.field(default_factory=dict)


class _RuleFunction(torch.autograd.Function):
    """Identity on the (already computed) layer output; backward = the rule's backward."""

    @staticmethod
    def forward(ctx, a, box, node):  # noqa: D401 - autograd signature
        ctx.node = node
        return box[0]

    @staticmethod
    def backward(ctx, g):
        node, ctx.node = ctx.node, None
        return node.backward(g), None, None


class _Node:
    __slots__ = ("engine", "rule", "layer", "state", "a", "is_input")

    def __init__(self, engine, rule, layer, state, a, is_input):
        self.engine, self.rule, self.layer, self.state = engine, rule, layer, state
        self.a, self.is_input = a, is_input

    def backward(self, g: Tensor) -> Tensor | None:
        out = self.rule.backward(self.layer, self.state, g)
        if not self.rule.produces_relevance:
            return out
        if self.is_input:
            self.engine.direct = out if self.engine.direct is None else self.engine.direct + out
            return None
        return stabilized_divide(out, self.a, 0.0)


class _DeferredNode(_Node):
    """A conv/dense layer expected to be folded with the next BatchNorm: its rule state is computed
    only if its own backward is ever reached (i.e. the fold did not happen for some consumer)."""

    __slots__ = ("version",)

    def backward(self, g):
        version = getattr(self, "version", None)
        if version is not None and self.a._version != version:
            raise RuntimeError(
                f"the input of layer '{self.layer.name}' was modified in place after the forward pass, so "
                "low_memory=True cannot recompute the layer; use low_memory=False"
            )
        with torch.no_grad():
            z = self.layer.forward(self.a, self.layer.weight, self.layer.bias)
            self.state = self.rule.forward(self.layer, self.a, z)
        return super().backward(g)


def _unsupported(name: str, module: nn.Module, method: str, why: str = "") -> UnsupportedLayerError:
    kind = type(module).__name__
    return UnsupportedLayerError(
        f"layer '{name or '<model>'}' ({kind}) is not supported by '{method}'{': ' + why if why else ''}. "
        f"To add a rule, pass composite={{'{name}': rule}} or {{{kind}: rule}} where rule is a rule name "
        "(toolkit_core.attribution.list_rules()), a toolkit_core.attribution.rules.Rule object, or 'gradient' "
        "to back-propagate the layer's plain gradient (correct for linear, parameter-free layers)"
    )


class _Engine:
    def __init__(self, model, rule_for, method, multiply_input, record, inject, inject_kind, low_memory=False):
        self.model, self.rule_for, self.method = model, rule_for, method
        self.low_memory = low_memory
        self.multiply_input = multiply_input
        self.record = record
        self.inject = dict(inject or {})
        self.inject_kind = inject_kind
        self.direct: Tensor | None = None
        self.x: Tensor | None = None
        self._grad_modes: list[bool] = []
        self._pending: dict[int, tuple[weakref.ref, _DeferredNode, str]] = {}
        self._calls: dict[str, int] = {}
        self._recorded: list[tuple[str, Tensor, dict]] = []
        self._injected: dict[str, Tensor] = {}
        self.handles: list = []

    # ----------------------------------------------------------------- planning

    def plan(self) -> None:
        """Choose every leaf module's rule and register the hooks (raises for unknown layers)."""
        pairs = batchnorm_pairs(self.model)
        self.fold_into = {}  # bn name -> conv name
        self.pools: list[nn.Module] = []  # max pools run with return_indices=True (hooks strip the indices)
        modules = dict(self.model.named_modules())
        rules: dict[str, Rule] = {}
        for name, module in modules.items():
            if not is_leaf(module):  # a container
                own = any(p is not None for p in module._parameters.values())
                if own and self.rule_for(name, module) is None:
                    raise _unsupported(name, module, self.method, "it holds its own parameters and sub-modules")
                continue
            if isinstance(module, MAX_POOLS) and not module.return_indices:
                rules[name] = _WINNER_TAKES_ALL  # the plain gradient, keeping less memory than autograd
                self.pools.append(module)
                continue
            rule = self.rule_for(name, module)
            if rule is None:
                if isinstance(module, (*PASS_THROUGH, *POOLS)):
                    continue
                raise _unsupported(name, module, self.method)
            if isinstance(rule, str):
                if rule != "gradient":
                    raise TypeError(f"rule_for returned {rule!r} for layer '{name}'; return a Rule or 'gradient'")
                continue
            if isinstance(rule, Gradient):
                continue
            if isinstance(module, POOLS):
                continue  # average pooling is linear (the z-rule is its gradient); max pooling is handled above
            check = getattr(rule, "check", None)
            if check is not None:
                why = check(module)
                if why:
                    raise _unsupported(name, module, self.method, why)
            rules[name] = rule
        for conv_name, bn_name in pairs.items():
            if conv_name in rules and not (isinstance(modules[bn_name], BN_TYPES) and modules[bn_name].training):
                self.fold_into[bn_name] = conv_name
        deferred = set(self.fold_into.values())
        # ruled layers run out of place unless their rule only needs what the in-place layer leaves behind
        self.out_of_place = {modules[n] for n, r in rules.items() if not r.keeps_inplace(modules[n])}
        for name, rule in rules.items():
            module = modules[name]
            self.handles.append(module.register_forward_pre_hook(self._pre_hook))
            self.handles.append(module.register_forward_hook(self._make_hook(name, rule, name in deferred)))
        if name_list := self._record_names(modules):
            for name in name_list:
                self.handles.append(modules[name].register_forward_hook(self._make_recorder(name)))
        for name in self.inject:
            if name not in modules:
                raise KeyError(f"inject: the model has no layer named {name!r}")
            self.handles.append(modules[name].register_forward_hook(self._make_injector(name)))

    def _record_names(self, modules: Mapping[str, nn.Module]) -> list[str]:
        if not self.record:
            return []
        if self.record is True:
            return [n for n, m in modules.items() if n and isinstance(m, LINEAR_TYPES)]
        names = list(self.record)
        for n in names:
            if n not in modules:
                some = ", ".join(list(modules)[1:20])
                raise KeyError(f"record: the model has no layer named {n!r}; layers: {some} ...")
        return names

    # ----------------------------------------------------------------- hooks

    def _pre_hook(self, module, args):
        self._grad_modes.append(torch.is_grad_enabled())
        torch.set_grad_enabled(False)

    def _make_hook(self, name: str, rule: Rule, deferred: bool) -> Callable:
        def hook(module, args, out):
            torch.set_grad_enabled(self._grad_modes.pop())
            if rule is _WINNER_TAKES_ALL:
                out, indices = out
                if not args[0].requires_grad:
                    return out
                state = rule.forward(module, args[0], indices)
                return _RuleFunction.apply(args[0], [out], _Node(self, rule, module, state, None, False))
            if len(args) != 1 or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
                raise _unsupported(name, module, self.method, "ruled layers must take and return one tensor")
            a = args[0]
            if not a.requires_grad:
                return out
            if (out is a or out.data_ptr() == a.data_ptr()) and module in self.out_of_place:
                out = out.clone()  # a layer returning its input: the rule needs both tensors intact
            is_input = a is self.x
            if isinstance(module, BN_TYPES) and name in self.fold_into:
                entry = self._pending.pop(id(a), None)
                if entry is not None and entry[0]() is a:
                    _, conv_node, conv_name = entry
                    layer = fold(conv_node.layer, module, f"{conv_name}+{name}")
                    if self._recompute(conv_node.a, out, conv_node.is_input):
                        node = _DeferredNode(self, conv_node.rule, layer, None, conv_node.a, conv_node.is_input)
                        node.version = conv_node.a._version
                        return _RuleFunction.apply(conv_node.a, [out], node)
                    with torch.no_grad():
                        state = conv_node.rule.forward(layer, conv_node.a, out)
                    keep = conv_node.a if conv_node.rule.produces_relevance else None
                    node = _Node(self, conv_node.rule, layer, state, keep, conv_node.is_input)
                    return _RuleFunction.apply(conv_node.a, [out], node)
            linear = isinstance(module, LINEAR_TYPES)
            layer = make_layer(module, name, a.shape) if linear else module
            recompute = linear and self._recompute(a, out, is_input)
            if deferred or recompute:
                node = _DeferredNode(self, rule, layer, None, a, is_input)
                res = _RuleFunction.apply(a, [out], node)
                if deferred:
                    self._pending[id(res)] = (weakref.ref(res), node, name)
                if recompute:
                    node.version = a._version
                return res
            with torch.no_grad():
                state = rule.forward(layer, a, out)
            node = _Node(self, rule, layer, state, a if rule.produces_relevance else None, is_input)
            return _RuleFunction.apply(a, [out], node)

        return hook

    def _recompute(self, a: Tensor, out: Tensor, is_input: bool) -> bool:
        """``low_memory``: keep the layer's input and recompute its output in the backward pass when
        that keeps less than the rule state of the output's size (the model input is kept anyway)."""
        return self.low_memory and (is_input or a.numel() < out.numel())

    def _key(self, name: str) -> str:
        i = self._calls.get(name, 0)
        self._calls[name] = i + 1
        return name if i == 0 else f"{name}:{i}"

    def _make_recorder(self, name: str) -> Callable:
        def hook(module, args, out):
            if not isinstance(out, Tensor) or not out.requires_grad:
                return None
            key, box = self._key(name), {}
            self._recorded.append((key, out.detach().clone(), box))
            out.register_hook(lambda g: box.__setitem__("c", g))
            return None

        return hook

    def _make_injector(self, name: str) -> Callable:
        def hook(module, args, out):
            if name not in self._injected and isinstance(out, Tensor):
                self._injected[name] = out
                return out.clone()  # later in-place ops (ReLU) must not rewrite the injection point
            return None

        return hook

    # ----------------------------------------------------------------- run

    def run(self, x: Tensor, target: Any) -> LayerwiseResult:
        # a copy: a layer left in place may overwrite its input, which must not be the caller's x
        xr = x.detach().clone().requires_grad_(True)
        self.x = xr
        with torch.enable_grad():
            logits = logits_of(self.model, xr)
            t = resolve_target(target, logits)
            self._pending.clear()
            if self.inject:
                if len(self.inject) != 1:
                    raise ValueError("inject takes exactly one {layer name: tensor} entry")
                (name, value), = self.inject.items()
                out = self._injected.get(name)
                if out is None or not out.requires_grad:
                    raise ValueError(f"inject: layer {name!r} was not reached by the forward pass or ignores x")
                value = torch.as_tensor(value, dtype=out.dtype, device=out.device)
                if value.shape != out.shape:
                    raise ValueError(
                        f"inject: layer {name!r} has output shape {tuple(out.shape)}, got {tuple(value.shape)}"
                    )
                seed = value if self.inject_kind == "signal" else stabilized_divide(value, out.detach(), 0.0)
                root = out
            else:
                root = logits
                seed = torch.zeros_like(logits).scatter_(1, t[:, None], 1.0)
            (grad,) = torch.autograd.grad(root, xr, seed, allow_unused=True)
        c = torch.zeros_like(xr) if grad is None else grad
        attribution = x.detach() * c if self.multiply_input else c
        if self.direct is not None:
            attribution = attribution + self.direct
        result = LayerwiseResult(attribution=attribution.detach(), logits=logits.detach(), target=t)
        for key, z, box in self._recorded:
            g = box.get("c")
            if g is None:
                g = torch.zeros_like(z)
            result.signal[key] = g
            result.relevance[key] = z * g
        return result


def run_engine(
    model: nn.Module,
    x: Tensor,
    target: Any,
    rule_for: Callable[[str, nn.Module], Rule | str | None],
    *,
    method: str = "modified backprop",
    multiply_input: bool = True,
    record: bool | list[str] | None = None,
    inject: Mapping[str, Tensor] | None = None,
    inject_kind: str = "relevance",
    low_memory: bool = False,
) -> LayerwiseResult:
    """Run one forward and one modified backward pass of ``model`` on ``x``.

    ``rule_for(name, module)``: the rule of each leaf module (a :class:`Rule`, ``"gradient"``, or
    ``None`` when the method has none). ``record``: ``True`` (every conv/dense/BatchNorm layer) or
    a list of module names (containers allowed) whose output relevance ``R = z * c`` is returned.
    ``inject``: ``{layer name: tensor}`` -- start the backward pass at that layer's output with this
    relevance (``inject_kind="relevance"``, converted to ``c = R / z``) or signal (``"signal"``)
    instead of at the target logit (used for the cosine-similarity convergence analysis of Sixt et
    al. 2020). ``low_memory``: for each ruled linear layer whose input is smaller than its output
    (or is the model input), keep the input and recompute the layer's output and rule state in the
    backward pass (one extra forward of that layer) instead of keeping a state of the output's size.
    The model is run in eval mode with frozen parameters and comes back unchanged.
    """
    if inject_kind not in ("relevance", "signal"):
        raise ValueError(f"inject_kind must be 'relevance' or 'signal', got {inject_kind!r}")
    engine = _Engine(model, rule_for, method, multiply_input, record, inject, inject_kind, low_memory)
    with preserved(model, mode=False, freeze=True):
        grad_mode = torch.is_grad_enabled()
        try:
            engine.plan()
            # max pools also return their argmax (the hooks strip it)
            with out_of_place(model, only=engine.out_of_place), flag_set(engine.pools, "return_indices", True):
                return engine.run(x, target)
        finally:
            torch.set_grad_enabled(grad_mode)
            for h in engine.handles:
                h.remove()
