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
from collections.abc import Callable, Collection, Mapping
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from ..modelstate import preserved
from .canonizers import batchnorm_pairs, flag_set, fold, is_leaf, out_of_place
from .composites import PASS_THROUGH, POOLS
from .inputs import logits_of, resolve_target
from .layers import BN_TYPES, CONV_TYPES, ConvLayer, DenseLayer, InputFolded, LinearLayer, make_layer
from .ops import OpWatcher, UnsupportedModelError
from .probes import Injector, Recorder
from .rules import MAX_POOL_DIMS, Gradient, Rule, WinnerTakesAll, stabilized_divide

__all__ = ["UnsupportedModelError", "UnsupportedLayerError", "NonFiniteRelevanceError", "LayerwiseResult",
           "run_engine"]

LINEAR_TYPES = (*CONV_TYPES, nn.Linear, *BN_TYPES)
MAX_POOLS = tuple(MAX_POOL_DIMS)
_WINNER_TAKES_ALL = WinnerTakesAll()


#: the former name of :class:`UnsupportedModelError` (kept: user code catches it)
UnsupportedLayerError = UnsupportedModelError
#: modules whose output is a gate (a product with it holds it constant; see :mod:`.ops`)
GATE_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softmax)


class NonFiniteRelevanceError(ValueError):
    """A rule produced NaN or infinite relevance; the message names the layer."""


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


class _Refused(Rule):
    """Stands for an op or layer without a rule: raises if (and only if) relevance reaches it."""

    name = "refused"

    def __init__(self, message: str):
        self.message = message

    def backward(self, layer, state, g):
        raise UnsupportedModelError(self.message)


class _Node:
    __slots__ = ("engine", "rule", "layer", "state", "a", "is_input", "label")

    def __init__(self, engine, rule, layer, state, a, is_input, label=""):
        self.engine, self.rule, self.layer, self.state = engine, rule, layer, state
        self.a, self.is_input, self.label = a, is_input, label

    def backward(self, g: Tensor) -> Tensor | None:
        out = self.rule.backward(self.layer, self.state, g)
        if self.engine.check_finite and not bool(torch.isfinite(out).all()):
            raise NonFiniteRelevanceError(
                f"the rule {self.rule.name!r} at '{self.label}' produced non-finite relevance (the incoming signal "
                f"was {'finite' if bool(torch.isfinite(g).all()) else 'already non-finite'}); a denominator "
                "vanished: raise epsilon, or use a rule defined for this layer's input (see docs/methods/lrp.md)"
            )
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


_HOW = (
    "To add a rule, pass composite={{'{name}': rule}} or {{{kind}: rule}} where rule is a rule name "
    "(toolkit_core.attribution.list_rules()), a toolkit_core.attribution.rules.Rule object, or 'gradient' "
    "to back-propagate the layer's plain gradient (correct for linear, parameter-free layers)"
)


def _unsupported(name: str, module: nn.Module, method: str, why: str = "") -> UnsupportedModelError:
    kind = type(module).__name__
    return UnsupportedModelError(
        f"layer '{name or '<model>'}' ({kind}) is not supported by '{method}'{': ' + why if why else ''}. "
        + _HOW.format(name=name, kind=kind)
    )


def _proxy_conv(args: tuple, kwargs: dict, n: int) -> SimpleNamespace:
    names = ("stride", "padding", "dilation", "groups")
    vals = dict(zip(names, args[3:]))
    vals.update({k: kwargs[k] for k in names if k in kwargs})
    tup = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,) * n  # noqa: E731
    padding = vals.get("padding", 0)
    return SimpleNamespace(
        stride=tup(vals.get("stride", 1)), padding=padding if isinstance(padding, str) else tup(padding),
        dilation=tup(vals.get("dilation", 1)), groups=vals.get("groups", 1), padding_mode="zeros",
    )


_FUNCTIONAL_PROXIES = {"linear": nn.Linear(1, 1, bias=False), "conv1d": nn.Conv1d(1, 1, 1, bias=False),
                       "conv2d": nn.Conv2d(1, 1, 1, bias=False), "conv3d": nn.Conv3d(1, 1, 1, bias=False)}


class _Engine:
    def __init__(self, model, rule_for, method, multiply_input, record, inject, inject_kind, low_memory=False,
                 positions=(), bilinear="uniform"):
        self.model, self.rule_for, self.method = model, rule_for, method
        self.low_memory = low_memory
        self.multiply_input = multiply_input
        self.record = record
        self.inject = dict(inject or {})
        self.inject_kind = inject_kind
        self.positions = frozenset(positions)
        self.bilinear_rule = bilinear
        self.input_range = getattr(model, "input_range", None)
        self.check_finite = False
        self.handles: list = []
        self.recorder: Recorder | None = None
        self.injector: Injector | None = None
        self.reset()

    def reset(self) -> None:
        self.direct: Tensor | None = None
        self.x: Tensor | None = None
        self.active = False
        self.covered = 0
        self.path: list[str] = []
        self._frames: list[tuple[bool, Any]] = []
        self._pending: dict[int, tuple[weakref.ref, _DeferredNode, str]] = {}
        if self.recorder is not None:
            self.recorder.clear()
        if self.injector is not None:
            self.injector.reset()
        self.seen_linear = self.seen_conv = False
        self.watcher = OpWatcher(self)

    # ----------------------------------------------------------------- planning

    def _choose(self, name: str, module: nn.Module, linear: bool) -> Any:
        """The rule for one call: positions (first, first_conv, last) come from execution order."""
        if not (linear and self.positions):
            return self.rule_for(name, module)
        pos = set()
        if not self.seen_linear:
            pos.add("first")
        if isinstance(module, CONV_TYPES) and not self.seen_conv:
            pos.add("first_conv")
        if name == getattr(self, "last_name", None):
            pos.add("last")
        return self.rule_for(name, module, positions=frozenset(pos & self.positions))

    def _classify(self, name: str, module: nn.Module, rule: Any) -> Any:
        """``None`` (plain gradient), a Rule, or a _Refused rule (raises if relevance reaches it)."""
        if rule is None or rule == "gradient" or isinstance(rule, Gradient):
            return None
        if isinstance(rule, str):
            raise TypeError(f"rule_for returned {rule!r} for layer '{name}'; return a Rule or 'gradient'")
        if isinstance(module, POOLS):
            return None  # average pooling is linear (the z-rule is its gradient); max pooling: winner takes all
        check = getattr(rule, "check", None)
        why = check(module) if check is not None else None
        if why:
            return _Refused(str(_unsupported(name, module, self.method, why)))
        return rule

    def plan(self) -> None:
        """Decide what each leaf module is: ruled, covered by the plain gradient, or transparent (its
        ops are watched); register the hooks. Nothing is refused here: only what runs counts."""
        pairs = batchnorm_pairs(self.model)
        self.fold_into = {}  # bn name -> conv name
        self.pools: list[nn.Module] = []  # max pools run with return_indices=True (hooks strip the indices)
        modules = dict(self.model.named_modules())
        self.kind: dict[nn.Module, str] = {}  # "rule", "dynamic" (rule chosen per call), "covered"
        self.static_rule: dict[nn.Module, Any] = {}
        ruled = set()
        for name, module in modules.items():
            if not is_leaf(module):
                continue
            if isinstance(module, MAX_POOLS) and not module.return_indices:
                self.kind[module], self.static_rule[module] = "rule", _WINNER_TAKES_ALL
                self.pools.append(module)
                continue
            linear = isinstance(module, (*CONV_TYPES, nn.Linear))
            if linear and self.positions:
                self.kind[module] = "dynamic"
                ruled.add(name)
                continue
            raw = self.rule_for(name, module)
            if raw is None and not isinstance(module, (*PASS_THROUGH, *POOLS)):
                continue  # transparent: the op watcher sees (and rules or refuses) what runs inside
            rule = self._classify(name, module, raw)
            if rule is None:
                self.kind[module] = "covered"
            else:
                self.kind[module], self.static_rule[module] = "rule", rule
                ruled.add(name)
        for conv_name, bn_name in pairs.items():
            if conv_name in ruled and not (isinstance(modules[bn_name], BN_TYPES) and modules[bn_name].training):
                self.fold_into[bn_name] = conv_name
        self.deferred = set(self.fold_into.values())
        # ruled layers run out of place unless their rule only needs what the in-place layer leaves behind
        self.out_of_place = {
            m for m, k in self.kind.items()
            if k == "dynamic" or (k == "rule" and not self.static_rule[m].keeps_inplace(m))
        }
        names = {m: n for n, m in modules.items()}
        for module in modules.values():
            self.handles.append(module.register_forward_pre_hook(self._pre_hook, prepend=True))
        for module, kind in self.kind.items():
            if kind != "covered":
                self.handles.append(module.register_forward_hook(self._make_hook(names[module])))
        for module in modules.values():
            if isinstance(module, GATE_MODULES):
                self.handles.append(module.register_forward_hook(lambda m, a, out: self.watcher.mark_gate(out)))
        # after the rule hooks: the recorder and the injector see the outputs the backward pass goes through
        if name_list := self._record_names(modules):
            self.recorder = Recorder({name: modules[name] for name in name_list}, at="output")
            self.recorder.attach(self.handles)
        if self.inject:
            if len(self.inject) != 1:
                raise ValueError("inject takes exactly one {layer name: tensor} entry")
            (name, value), = self.inject.items()
            if name not in modules:
                raise KeyError(f"inject: the model has no layer named {name!r}")
            self.injector = Injector(modules[name], value, self.inject_kind, replace_gradient=False)
            self.injector.attach(self.handles)
        self.names = names
        for module in modules.values():  # last of all: leave the module after every other hook ran
            self.handles.append(module.register_forward_hook(self._post_hook))

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
        if not self.active:
            return
        name = self.names[module]
        self.path.append(name)
        kind = self.kind.get(module)
        rule = None
        if kind == "dynamic":
            rule = self._classify(name, module, self._choose(name, module, True))
        elif kind == "rule":
            rule = self.static_rule[module]
        if kind in ("rule", "dynamic") and isinstance(module, (*CONV_TYPES, nn.Linear)) and _depends(args):
            self.seen_linear = True
            self.seen_conv = self.seen_conv or isinstance(module, CONV_TYPES)
        if kind is not None:
            self.covered += 1
        if kind in ("rule", "dynamic"):
            self._frames.append((torch.is_grad_enabled(), rule))
            if rule is not None:
                torch.set_grad_enabled(False)

    def _post_hook(self, module, args, out):
        if not self.active:
            return None
        if self.kind.get(module) is not None:
            self.covered -= 1
        if self.path:
            self.path.pop()
        return None

    def _make_hook(self, name: str) -> Callable:
        def hook(module, args, out):
            if not self.active:
                return None
            grad_mode, rule = self._frames.pop()
            torch.set_grad_enabled(grad_mode)
            if rule is None:
                return None
            if rule is _WINNER_TAKES_ALL:
                out, indices = out
                if not args[0].requires_grad:
                    return out
                state = rule.forward(module, args[0], indices)
                return _RuleFunction.apply(args[0], [out], _Node(self, rule, module, state, None, False, name))
            if len(args) != 1 or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
                raise _unsupported(name, module, self.method, "ruled layers must take and return one tensor")
            a = args[0]
            if not a.requires_grad:
                return out
            if (out is a or out.data_ptr() == a.data_ptr()) and module in self.out_of_place:
                out = out.clone()  # a layer returning its input: the rule needs both tensors intact
            if isinstance(module, BN_TYPES) and name in self.fold_into:
                entry = self._pending.pop(id(a), None)
                if entry is not None and entry[0]() is a:
                    _, conv_node, conv_name = entry
                    layer = fold(conv_node.layer, module, f"{conv_name}+{name}")
                    layer.input_range = conv_node.layer.__dict__.get("input_range")
                    if self._recompute(conv_node.a, out, conv_node.is_input):
                        node = _DeferredNode(self, conv_node.rule, layer, None, conv_node.a, conv_node.is_input,
                                             layer.name)
                        node.version = conv_node.a._version
                        return _RuleFunction.apply(conv_node.a, [out], node)
                    with torch.no_grad():
                        state = conv_node.rule.forward(layer, conv_node.a, out)
                    keep = conv_node.a if conv_node.rule.produces_relevance else None
                    node = _Node(self, conv_node.rule, layer, state, keep, conv_node.is_input, layer.name)
                    return _RuleFunction.apply(conv_node.a, [out], node)
            linear = isinstance(module, LINEAR_TYPES)
            layer = make_layer(module, name, a.shape) if linear else module
            return self._apply(rule, layer, a, out, name, linear, deferred=name in self.deferred)

        return hook

    def _apply(self, rule: Rule, layer: Any, a: Tensor, out: Tensor, name: str, linear: bool,
               deferred: bool = False) -> Tensor:
        """Wrap ``out`` so that its backward is ``rule``'s; fold an affine input normalization."""
        is_input = a is self.x
        if linear:
            affine = self.watcher.affine_of(a)
            if affine is not None:
                layer = self._fold_input(layer, affine, name)
                if layer is not None:
                    a, is_input = self.x, True
            if layer is None:
                if rule.produces_relevance:
                    raise UnsupportedModelError(
                        f"layer '{name}' reads an affine map of the input that cannot be folded into it, and its "
                        f"rule {rule.name!r} produces relevance from its input; use a per-channel normalization "
                        "directly before the first layer or another rule there"
                    )
                layer = make_layer(self._module_of(name), name, a.shape)
        if is_input and isinstance(layer, LinearLayer):
            layer.input_range = self.input_range
        recompute = linear and self._recompute(a, out, is_input)
        if deferred or recompute:
            node = _DeferredNode(self, rule, layer, None, a, is_input, name)
            res = _RuleFunction.apply(a, [out], node)
            if deferred:
                self._pending[id(res)] = (weakref.ref(res), node, name)
            if recompute:
                node.version = a._version
            return res
        with torch.no_grad():
            state = rule.forward(layer, a, out)
        node = _Node(self, rule, layer, state, a if rule.produces_relevance else None, is_input, name)
        return _RuleFunction.apply(a, [out], node)

    def _module_of(self, name: str) -> Any:
        return dict(self.model.named_modules()).get(name)

    def _fold_input(self, layer: Any, affine: tuple[Tensor, Tensor], name: str) -> Any:
        s, t = affine
        x = self.x
        try:
            s_full = s.expand(x.shape[1:]) if s.dim() <= x.dim() - 1 else s.expand(x.shape)[0]
            if x.dim() > 2:  # a per-channel scale is needed for a convolution
                per_channel = s_full.reshape(s_full.shape[0], -1)
                if not bool((per_channel == per_channel[:, :1]).all()):
                    return None
                scale = per_channel[:, 0]
            else:
                scale = s_full.reshape(-1)
            shift = t.expand(x.shape[1:]) if t.dim() <= x.dim() - 1 else t.expand(x.shape)[0]
            if t.dim() == x.dim() and t.shape[0] != 1:
                return None
            return InputFolded(layer, scale.to(x.dtype), shift.to(x.dtype).unsqueeze(0))
        except (RuntimeError, ValueError):
            return None

    def _recompute(self, a: Tensor, out: Tensor, is_input: bool) -> bool:
        """``low_memory``: keep the layer's input and recompute its output in the backward pass when
        that keeps less than the rule state of the output's size (the model input is kept anyway)."""
        return self.low_memory and (is_input or a.numel() < out.numel())

    # ----------------------------------------------------------------- functional ops (called by the watcher)

    def where(self) -> str:
        return self.path[-1] if self.path else "<model>"

    def unsupported_op(self, op: str, why: str = "") -> UnsupportedModelError:
        path = self.where()
        module = self._module_of(path) if self.path else self.model
        kind = type(module).__name__
        return UnsupportedModelError(
            f"op '{op}' in module '{path}' ({kind}) is not supported by '{self.method}'{': ' + why if why else ''}. "
            f"To add a rule, put the op in a module of its own and pass composite={{ThatModule: rule}} (or "
            f"{{'its.path': rule}}), with rule a rule name (toolkit_core.attribution.list_rules()), a "
            "toolkit_core.attribution.rules.Rule object, or 'gradient' when the plain gradient is right for it; "
            "the ops the engine handles are listed in toolkit_core.attribution.ops"
        )

    def poisoned(self, out: Tensor, op: str, why: str) -> Tensor:
        """``out`` unchanged, but relevance reaching it raises (an op used in a way without a rule)."""
        rule = _Refused(str(self.unsupported_op(op, why)))
        return _RuleFunction.apply(out, [out.detach()], _Node(self, rule, None, None, None, False, self.where()))

    def bilinear(self, op: Callable, operands: list[Tensor], name: str) -> Tensor:
        """A product of input-dependent tensors: the uniform rule of AttnLRP (relevance split equally
        between the factors) for relevance-conserving methods; refused for the others."""
        if self.bilinear_rule != "uniform":
            return self.poisoned(op(*operands), name, "a product of two input-dependent tensors has no rule for "
                                 "this method (it is defined for ReLU networks); relevance reached one")
        n = len(operands)
        parts = [op(*[o if j == i else o.detach() for j, o in enumerate(operands)]) for i in range(n)]
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out / n

    def functional_linear(self, func: Callable, name: str, args: tuple, kwargs: dict) -> Tensor:
        a = args[0] if args else kwargs["input"]
        weight = args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if isinstance(weight, Tensor) and weight.requires_grad or isinstance(bias, Tensor) and bias.requires_grad:
            raise self.unsupported_op(name, "its weight depends on the input")
        proxy = _FUNCTIONAL_PROXIES[name]
        key = f"{self.where()}#{name}"
        rule = self._classify(key, proxy, self._choose(key, proxy, True))
        self.seen_linear = True
        self.seen_conv = self.seen_conv or name != "linear"
        if rule is None:
            return func(*args, **kwargs)
        with torch.no_grad():
            out = func(*args, **kwargs)
        w, b = weight.detach(), None if bias is None else bias.detach()
        if name == "linear":
            layer = DenseLayer(None, key, w, b, a.shape)
        else:
            layer = ConvLayer(_proxy_conv(args, kwargs, int(name[-2])), key, w, b, a.shape)
        return self._apply(rule, layer, a, out, key, False) if self.watcher.affine_of(a) is None else \
            self._apply_folded(rule, layer, a, out, key)

    def _apply_folded(self, rule, layer, a, out, key):
        folded = self._fold_input(layer, self.watcher.affine_of(a), key)
        if folded is None:
            return self._apply(rule, layer, a, out, key, False)
        folded.input_range = self.input_range
        with torch.no_grad():
            state = rule.forward(folded, self.x, out)
        node = _Node(self, rule, folded, state, self.x if rule.produces_relevance else None, True, key)
        return _RuleFunction.apply(self.x, [out], node)

    def functional_activation(self, func: Callable, name: str, args: tuple, kwargs: dict, proxy: nn.Module):
        a = args[0] if args else kwargs["input"]
        key = f"{self.where()}#{name}"
        raw = self.rule_for(key, proxy)
        if raw is None:
            raise self.unsupported_op(name, "the method has no rule for this activation")
        rule = self._classify(key, proxy, raw)
        inplace = name.endswith("_") or kwargs.get("inplace") is True or (
            name in ("relu", "relu6", "hardtanh", "hardswish", "silu", "leaky_relu", "elu") and args[-1] is True
            and len(args) > 1)
        if rule is None:
            return func(*args, **kwargs)
        with torch.no_grad():
            z = proxy(a)
        res = _RuleFunction.apply(a, [z], _Node(self, rule, proxy, rule.forward(proxy, a.detach(), z), None, False,
                                                key))
        if inplace:
            return a.copy_(res)  # the caller's tensor holds the activation, and its graph goes through the rule
        return res

    # ----------------------------------------------------------------- run

    def _last_linear(self, x: Tensor) -> None:
        """Where the composite names ``last``: one forward pass without autograd finds the last conv/dense
        layer in execution order."""
        order: list[str] = []
        hooks = [m.register_forward_hook(lambda m, a, o, n=n: order.append(n))
                 for n, m in self.model.named_modules() if isinstance(m, (*CONV_TYPES, nn.Linear))]
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for h in hooks:
                h.remove()
        self.last_name = order[-1] if order else None

    def run(self, x: Tensor, target: Any) -> LayerwiseResult:
        # a copy: a layer left in place may overwrite its input, which must not be the caller's x
        xr = x.detach().clone().requires_grad_(True)
        self.x = xr
        with torch.enable_grad():
            self.active = True
            try:
                with self.watcher:
                    logits = logits_of(self.model, xr)
            finally:
                self.active = False
            t = resolve_target(target, logits)
            self._pending.clear()
            if self.injector is not None:
                (name, value), = self.inject.items()
                out = self.injector.output
                if out is None or not out.requires_grad:
                    raise ValueError(f"inject: layer {name!r} was not reached by the forward pass or ignores x")
                if tuple(torch.as_tensor(value).shape) != tuple(out.shape):
                    raise ValueError(
                        f"inject: layer {name!r} has output shape {tuple(out.shape)}, got "
                        f"{tuple(torch.as_tensor(value).shape)}"
                    )
                seed = self.injector.seed(out.dtype)
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
        for key, z, g in self.recorder.calls() if self.recorder is not None else ():
            if g is None:
                g = torch.zeros_like(z)
            result.signal[key] = g
            result.relevance[key] = z * g
        return result


def _depends(args: Any) -> bool:
    return any(isinstance(a, Tensor) and a.requires_grad for a in args)


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
    positions: Collection[str] = (),
    bilinear: str = "uniform",
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
    ``positions``: the position keys (``first``, ``first_conv``, ``last``) the composite uses;
    ``rule_for`` then takes a ``positions=`` argument, the positions of that call in execution order.
    ``bilinear``: ``"uniform"`` (products of two input-dependent tensors split relevance equally, as
    in AttnLRP) or ``"refuse"`` (an error if relevance reaches one).
    The model is run in eval mode with frozen parameters and comes back unchanged. A non-finite
    attribution is never returned: the pass is repeated with a check at every rule and the error
    names the first layer (in backward order) that produced NaN or inf.
    """
    if inject_kind not in ("relevance", "signal"):
        raise ValueError(f"inject_kind must be 'relevance' or 'signal', got {inject_kind!r}")
    engine = _Engine(model, rule_for, method, multiply_input, record, inject, inject_kind, low_memory,
                     positions, bilinear)
    with preserved(model, mode=False, freeze=True):
        grad_mode = torch.is_grad_enabled()
        try:
            engine.plan()
            # max pools also return their argmax (the hooks strip it)
            if "last" in engine.positions:
                engine._last_linear(x)
            with out_of_place(model, only=engine.out_of_place), flag_set(engine.pools, "return_indices", True):
                result = engine.run(x, target)
                if not bool(torch.isfinite(result.attribution).all()):
                    engine.reset()
                    engine.check_finite = True
                    engine.run(x, target)
                    raise NonFiniteRelevanceError(
                        f"'{method}' produced a non-finite attribution although every rule's output was finite; "
                        "the model's forward pass itself is not finite on this input"
                    )
                return result
        finally:
            torch.set_grad_enabled(grad_mode)
            for h in engine.handles:
                h.remove()
