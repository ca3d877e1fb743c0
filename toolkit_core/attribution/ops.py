"""Every operation of the forward pass, module or functional, seen by the engine.

The engine watches the forward pass with a ``__torch_function__`` mode (:class:`OpWatcher`). Ops that
run inside a leaf module the engine accounts for (a module with a rule, a pooling or pass-through
layer) are left to that module's rule. Every other op whose tensor arguments depend on the input
(module-free code such as ``F.relu`` in GoogLeNet, ``out += identity`` in ResNet, the body of a leaf
module without a rule such as ``StochasticDepth`` or ``Permute``) is classified here:

* **exact under the plain gradient** (:data:`EXACT`): ops that move, copy, select or linearly combine
  values without parameters (reshape, flatten, permute, cat, split, indexing, pooling, padding,
  dropout in eval mode, ``+``/``-`` between tensors -- the proportional residual split of LRP in
  the ``c = R / z`` convention -- and products or quotients by constants);
* **activations** (``relu``, ``relu6``, ``hardtanh``, ``gelu``, ``silu``, ``hardswish``, ``mish``): the
  method's rule for the corresponding module type (:data:`ACTIVATION_PROXIES`), so ``F.relu`` gets
  exactly what ``nn.ReLU`` gets;
* **linear ops with parameters** (``F.linear``, ``F.conv1d/2d/3d``): the composite's rule for the
  ``linear`` or ``conv`` group;
* **normalizations** (``layer_norm``, ``group_norm``, ``rms_norm``): the standard deviation is held
  constant (Ali et al. 2022, arXiv:2202.07304), which leaves a linear map (exact under the gradient);
* **gates and attention**: the outputs of ``sigmoid``, ``hardsigmoid`` and ``softmax`` are gates; a
  product of a gate with another input-dependent tensor treats the gate as a constant (squeeze-and-
  excitation, attention weights as in Ali et al. 2022); ``scaled_dot_product_attention`` and
  ``multi_head_attention_forward`` are decomposed into these pieces;
* **products of two input-dependent tensors** otherwise: the uniform rule of AttnLRP (Achtibat et al.
  2024, arXiv:2402.05602: half of the relevance to each factor) for methods that conserve relevance;
  methods defined by ReLU rules (GBP, deconvnet, RectGrad) get an error if relevance reaches it.

Anything else raises :class:`UnsupportedModelError` naming the op, the module path and how to add a
rule. A gate used as an ordinary activation (its output feeding something other than a product) gets
the method's activation rule; where the method has none, an error is raised when the backward pass
reaches it -- so only what is actually used counts.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["UnsupportedModelError", "OpWatcher", "EXACT", "ACTIVATION_PROXIES", "op_name"]


class UnsupportedModelError(TypeError):
    """An op or layer of the model has no rule for the method, and the plain gradient would be wrong."""


def op_name(func: Callable) -> str:
    name = getattr(func, "__name__", None)
    if name in (None, "__get__", "__set__"):
        owner = getattr(func, "__self__", None)
        name = getattr(owner, "__name__", None) or repr(func)
    return name


_LINEAR_COMBINATIONS = {
    "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__", "__isub__", "subtract",
    "neg", "__neg__", "negative", "sum", "mean", "cumsum", "rsub",
}
_STRUCTURAL = {
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose", "transpose_", "t",
    "T", "mT", "contiguous", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "expand", "expand_as", "__getitem__",
    "narrow", "select", "split", "split_with_sizes", "chunk", "tensor_split", "unbind", "clone", "roll", "flip",
    "movedim", "moveaxis", "swapaxes", "swapdims", "index_select", "repeat", "repeat_interleave", "tile", "to",
    "type_as", "float", "double", "half", "cat", "concat", "concatenate", "stack", "hstack", "vstack",
    "channel_shuffle", "native_channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "gather", "take_along_dim",
    "masked_fill", "masked_fill_", "diagonal", "tril", "triu", "unfold", "fold", "as_strided", "detach",
    "zero_pad2d", "constant_pad_nd", "pad", "__setitem__", "copy_",
}
_POOLING = {
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices",
    "_max_pool1d", "_max_pool2d", "_max_pool3d", "_adaptive_max_pool1d", "_adaptive_max_pool2d",
    "_adaptive_max_pool3d", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "batch_norm",
}
#: ops that are exact under the plain gradient for every method (see the module docstring)
EXACT: frozenset[str] = frozenset(_LINEAR_COMBINATIONS | _STRUCTURAL | _POOLING)
_DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"}
_MULS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"}
_DIVS = {"div", "div_", "__truediv__", "__itruediv__", "true_divide", "divide"}
_MATMULS = {"matmul", "__matmul__", "__rmatmul__", "bmm", "mm", "einsum", "baddbmm", "addmm"}
_GATE_FUNCS = {"sigmoid", "sigmoid_", "hardsigmoid", "softmax", "_softmax"}
_NORMS = {"layer_norm", "group_norm", "rms_norm"}
_INPLACE = {"relu_", "hardtanh_", "sigmoid_"}

#: module types standing for functional activations (the rule a method has for them applies)
ACTIVATION_PROXIES: dict[str, Callable[[tuple, dict], nn.Module]] = {
    "relu": lambda a, k: nn.ReLU(), "relu_": lambda a, k: nn.ReLU(),
    "relu6": lambda a, k: nn.ReLU6(),
    "hardtanh": lambda a, k: nn.Hardtanh(*_hardtanh_bounds(a, k)),
    "hardtanh_": lambda a, k: nn.Hardtanh(*_hardtanh_bounds(a, k)),
    "gelu": lambda a, k: nn.GELU(approximate=k.get("approximate", "none")),
    "silu": lambda a, k: nn.SiLU(), "hardswish": lambda a, k: nn.Hardswish(), "mish": lambda a, k: nn.Mish(),
    "sigmoid": lambda a, k: nn.Sigmoid(), "sigmoid_": lambda a, k: nn.Sigmoid(),
    "hardsigmoid": lambda a, k: nn.Hardsigmoid(), "tanh": lambda a, k: nn.Tanh(),
    "leaky_relu": lambda a, k: nn.LeakyReLU(k.get("negative_slope", a[1] if len(a) > 1 else 0.01)),
    "elu": lambda a, k: nn.ELU(), "softplus": lambda a, k: nn.Softplus(),
}


def _hardtanh_bounds(args: tuple, kwargs: dict) -> tuple[float, float]:
    lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
    hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
    return float(lo), float(hi)


def _tensors(obj: Any):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _depends(obj: Any) -> bool:
    return any(t.requires_grad for t in _tensors(obj))


class OpWatcher(TorchFunctionMode):
    """The engine's view of the forward pass; ``engine`` supplies rules, positions and bookkeeping."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine
        self.gates: dict[int, tuple[weakref.ref, Tensor]] = {}
        self.affine: dict[int, tuple[weakref.ref, Tensor, Tensor]] = {}

    # ------------------------------------------------------------------ bookkeeping

    def mark_gate(self, out: Tensor) -> None:
        if isinstance(out, Tensor) and out.requires_grad:
            self.gates[id(out)] = (weakref.ref(out), out.detach())

    def gate_of(self, t: Any) -> Tensor | None:
        if not isinstance(t, Tensor):
            return None
        hit = self.gates.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else None

    def affine_of(self, t: Any) -> tuple[Tensor, Tensor] | None:
        """``(s, t)`` when the tensor is ``x * s + t`` for the model input ``x`` (constants ``s, t``)."""
        if not isinstance(t, Tensor):
            return None
        if t is self.engine.x:
            return None
        hit = self.affine.get(id(t))
        return (hit[1], hit[2]) if hit is not None and hit[0]() is t else None

    def _track_affine(self, name: str, args: tuple, out: Any) -> None:
        if not isinstance(out, Tensor) or not args:
            return
        x = self.engine.x
        first = args[0]
        src = (torch.ones((), dtype=x.dtype, device=x.device), torch.zeros((), dtype=x.dtype, device=x.device)) \
            if first is x else self.affine_of(first)
        if src is None:
            return
        s, t = src
        if name in ("clone", "contiguous"):
            new = (s, t)
        elif len(args) < 2 or _depends(args[1:]):
            return
        else:
            c = args[1]
            c = torch.as_tensor(c, dtype=x.dtype, device=x.device) if not isinstance(c, Tensor) else c.detach()
            alpha = 1.0
            if name in ("sub", "sub_", "__sub__", "__isub__", "subtract"):
                new = (s, t - c * alpha)
            elif name in ("add", "add_", "__add__", "__iadd__", "__radd__"):
                new = (s, t + c * alpha)
            elif name in _MULS:
                new = (s * c, t * c)
            elif name in _DIVS:
                new = (s / c, t / c)
            else:
                return
        self.affine[id(out)] = (weakref.ref(out), *new)

    # ------------------------------------------------------------------ dispatch

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        engine = self.engine
        if engine.covered > 0 or not engine.active:
            return func(*args, **kwargs)
        name = op_name(func)
        if name in _NORMS and _depends(args[:1]):
            return self._norm(name, args, kwargs)
        if name == "scaled_dot_product_attention" and _depends((args, kwargs)):
            return self._sdpa(*args, **kwargs)
        if name == "multi_head_attention_forward" and _depends((args[:3], kwargs)):
            return self._mha(func, args, kwargs)
        if not _depends((args, kwargs)):
            out = func(*args, **kwargs)
            return out
        if name in EXACT:
            out = func(*args, **kwargs)
            if engine.x is not None:
                self._track_affine(name, args, out)
            return out
        if name in _DROPOUTS:
            training = kwargs.get("training", args[2] if len(args) > 2 else True)
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            if training and p > 0:
                raise engine.unsupported_op(name, "dropout runs in training mode here (training=True); "
                                            "call it with training=self.training")
            return func(*args, **kwargs)
        if name in _MULS or name in _DIVS or name in _MATMULS:
            return self._product(func, name, args, kwargs)
        if name in ("linear", "conv1d", "conv2d", "conv3d"):
            return engine.functional_linear(func, name, args, kwargs)
        if name in ACTIVATION_PROXIES:
            out = engine.functional_activation(func, name, args, kwargs, ACTIVATION_PROXIES[name](args, kwargs))
            if name in _GATE_FUNCS:
                self.mark_gate(out)
            return out
        if name in _GATE_FUNCS:  # softmax
            out = engine.poisoned(func(*args, **kwargs), name, "a softmax output used other than as weights of a "
                                  "product (attention) has no rule")
            self.mark_gate(out)
            return out
        out = func(*args, **kwargs)
        if _depends(out):
            raise engine.unsupported_op(name)
        return out  # shapes, comparisons, argmax...: no gradient path

    # ------------------------------------------------------------------ rules at op level

    def _product(self, func, name, args, kwargs):
        engine = self.engine
        if name in ("einsum",):
            operands = list(args[1:]) if len(args) > 1 else list(kwargs.get("operands", ()))
            if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
                operands = list(operands[0])
            dependent = [i for i, o in enumerate(operands) if _depends(o)]
            if len(dependent) <= 1:
                return func(*args, **kwargs)
            ops = [self.gate_of(o) if self.gate_of(o) is not None else o for o in operands]
            if sum(_depends(o) for o in ops) <= 1:
                return torch.einsum(args[0], *ops)
            return engine.bilinear(lambda *o: torch.einsum(args[0], *o), ops, name)
        if name in ("baddbmm", "addmm"):
            base, a, b = args[0], args[1], args[2]
            rest = args[3:]
            if _depends(a) and _depends(b):
                ga, gb = self.gate_of(a), self.gate_of(b)
                a, b = (ga if ga is not None else a), (gb if gb is not None and ga is None else b)
                if _depends(a) and _depends(b):
                    raise engine.unsupported_op(name, "a product of two input-dependent tensors plus a third")
            return func(base, a, b, *rest, **kwargs)
        a, b = args[0], args[1]
        if not (_depends(a) and _depends(b)):
            if name in _DIVS and _depends(b):
                raise engine.unsupported_op(name, "division by an input-dependent tensor")
            out = func(*args, **kwargs)
            self._track_affine(name, args, out)
            return out
        if name in _DIVS:
            raise engine.unsupported_op(name, "division by an input-dependent tensor")
        ga, gb = self.gate_of(a), self.gate_of(b)
        if gb is not None:
            b = gb
        elif ga is not None:
            a = ga
        if not (_depends(a) and _depends(b)):
            if name.startswith("__i") or name.endswith("_"):  # in place: keep the caller's tensor
                return func(a, b, *args[2:], **kwargs) if a is args[0] else func(*args, **kwargs)
            return func(a, b, *args[2:], **kwargs)
        if name.startswith("__i") or name.endswith("_"):
            raise engine.unsupported_op(name, "an in-place product of two input-dependent tensors")
        op = {"bmm": torch.bmm, "mm": torch.mm}.get(name, torch.mul if name in _MULS else torch.matmul)
        return engine.bilinear(op, [a, b], name)

    def _norm(self, name, args, kwargs):
        """Layer/group/RMS normalization with the standard deviation held constant (Ali et al. 2022)."""
        x = args[0]
        if name == "layer_norm":
            shape = kwargs.get("normalized_shape", args[1] if len(args) > 1 else None)
            weight = kwargs.get("weight", args[2] if len(args) > 2 else None)
            bias = kwargs.get("bias", args[3] if len(args) > 3 else None)
            eps = kwargs.get("eps", args[4] if len(args) > 4 else 1e-5)
            dims = tuple(range(-len(shape), 0))
            centered = x - x.mean(dim=dims, keepdim=True)
            var = centered.detach().pow(2).mean(dim=dims, keepdim=True)
            y = centered / torch.sqrt(var + eps)
        elif name == "rms_norm":
            shape = kwargs.get("normalized_shape", args[1] if len(args) > 1 else None)
            weight = kwargs.get("weight", args[2] if len(args) > 2 else None)
            bias = None
            eps = kwargs.get("eps", args[3] if len(args) > 3 else None)
            eps = torch.finfo(x.dtype).eps if eps is None else eps
            dims = tuple(range(-len(shape), 0))
            y = x / torch.sqrt(x.detach().pow(2).mean(dim=dims, keepdim=True) + eps)
        else:  # group_norm(input, num_groups, weight, bias, eps)
            groups = kwargs.get("num_groups", args[1])
            weight = kwargs.get("weight", args[2] if len(args) > 2 else None)
            bias = kwargs.get("bias", args[3] if len(args) > 3 else None)
            eps = kwargs.get("eps", args[4] if len(args) > 4 else 1e-5)
            b = x.shape[0]
            g = x.reshape(b, groups, -1)
            centered = g - g.mean(dim=-1, keepdim=True)
            y = (centered / torch.sqrt(centered.detach().pow(2).mean(dim=-1, keepdim=True) + eps)).reshape(x.shape)
            view = (1, -1, *([1] * (x.dim() - 2)))
            weight = None if weight is None else weight.view(view)
            bias = None if bias is None else bias.view(view)
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return y

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        """``softmax(q k^T / sqrt(d) + mask) v`` with the attention weights held constant (Ali et al. 2022)."""
        if kw.get("enable_gqa"):
            raise self.engine.unsupported_op("scaled_dot_product_attention", "grouped-query attention")
        if dropout_p and self.engine.model.training:
            raise self.engine.unsupported_op("scaled_dot_product_attention", "attention dropout in training mode")
        d = query.shape[-1]
        s = (query.detach() @ key.detach().transpose(-2, -1)) * (1 / math.sqrt(d) if scale is None else scale)
        if is_causal:
            n, m = s.shape[-2:]
            s = s.masked_fill(~torch.ones(n, m, dtype=torch.bool, device=s.device).tril(), float("-inf"))
        if attn_mask is not None:
            s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
        return torch.softmax(s, dim=-1) @ value

    def _mha(self, func, args, kwargs):
        """``F.multi_head_attention_forward`` decomposed into ops the watcher sees (in-projection,
        attention with constant weights, out-projection); masks, bias_k/v and zero attention refused."""
        names = ["query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias",
                 "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training",
                 "key_padding_mask", "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight",
                 "k_proj_weight", "v_proj_weight", "static_k", "static_v", "average_attn_weights", "is_causal"]
        p = dict(zip(names, args))
        p.update(kwargs)
        for bad in ("bias_k", "bias_v", "key_padding_mask", "attn_mask", "static_k", "static_v"):
            if p.get(bad) is not None:
                raise self.engine.unsupported_op("multi_head_attention_forward", f"{bad} is not supported")
        if p.get("add_zero_attn") or p.get("is_causal"):
            raise self.engine.unsupported_op("multi_head_attention_forward", "add_zero_attn/is_causal")
        q, k, v = p["query"], p["key"], p["value"]
        tgt, bsz, embed = q.shape
        heads = p["num_heads"]
        hd = embed // heads
        b_in = p.get("in_proj_bias")
        if p.get("use_separate_proj_weight"):
            ws = [p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"]]
        else:
            ws = list(p["in_proj_weight"].chunk(3))
        bs = [None] * 3 if b_in is None else list(b_in.chunk(3))
        with self:  # the decomposition's ops are seen (and ruled) like the model's own
            qp, kp, vp = (F.linear(t, w, b) for t, w, b in zip((q, k, v), ws, bs))
            qp = qp.reshape(tgt, bsz * heads, hd).transpose(0, 1)
            kp = kp.reshape(kp.shape[0], bsz * heads, hd).transpose(0, 1)
            vp = vp.reshape(vp.shape[0], bsz * heads, hd).transpose(0, 1)
            weights = torch.softmax((qp * (1 / math.sqrt(hd))) @ kp.transpose(-2, -1), dim=-1)
            out = weights @ vp
            out = out.transpose(0, 1).reshape(tgt * bsz, embed)
            out = F.linear(out, p["out_proj_weight"], p.get("out_proj_bias")).reshape(tgt, bsz, embed)
        attn = None
        if p.get("need_weights", True):
            attn = weights.detach().reshape(bsz, heads, tgt, -1)
            attn = attn.mean(dim=1) if p.get("average_attn_weights", True) else attn
        return out, attn
