"""Fold eval-mode BatchNorm into the preceding convolution for the attack's forward/backward passes.

In eval mode ``BN(conv(x)) = conv'(x)`` with ``W' = W * g / sqrt(v + e)`` and
``b' = (b - m) * g / sqrt(v + e) + beta`` (running mean ``m``, variance ``v``, affine ``g, beta``), so
an attack differentiates through one convolution instead of two ops: the same function and input
gradient up to float rounding, with one pass less over each activation. The user's model is never
modified: :func:`fold_batchnorm` traces it with :mod:`torch.fx` into a new ``GraphModule`` that shares
the untouched submodules and calls small folded convolutions (buffers only, nothing trainable).
Models that cannot be traced, are (partly) in train mode, have no BatchNorm, or carry hooks on a
conv/BN pair are returned unchanged. The folded module is cached per model and rebuilt whenever a
parameter or buffer of the model changed (its version counter or storage).
"""

from __future__ import annotations

import itertools
import weakref

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FoldedConv(nn.Module):
    """``conv`` followed by eval-mode ``bn``, as one convolution with folded weight and bias buffers."""

    def __init__(self, conv: nn.Module, bn: _BatchNorm):
        super().__init__()
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            weight = conv.weight * scale.reshape((-1,) + (1,) * (conv.weight.dim() - 1)).to(conv.weight.dtype)
            bias = -bn.running_mean * scale if conv.bias is None else (conv.bias - bn.running_mean) * scale
            if bn.bias is not None:
                bias = bias + bn.bias
        self.register_buffer("weight", weight.detach())
        self.register_buffer("bias", bias.detach().to(weight.dtype))
        self._forward_conv = conv._conv_forward  # keeps padding mode, stride, dilation, groups

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_conv(x, self.weight, self.bias)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def _state_key(model: nn.Module) -> tuple:
    tensors = itertools.chain(model.parameters(), model.buffers())
    return (sum(1 for _ in model.modules()),) + tuple((t.data_ptr(), t._version) for t in tensors)


def _build(model: nn.Module) -> nn.Module:
    try:
        gm = fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow etc.: run the model as it is
        return model
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BatchNorm):
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        conv, bn = modules.get(prev.target), modules[node.target]
        if not isinstance(conv, _CONVS) or _hooked(conv) or _hooked(bn):
            continue
        if bn.running_mean is None or bn.running_var is None or len(node.args) != 1 or node.kwargs:
            continue
        if bn.num_features != conv.out_channels:
            continue
        name = f"_torchtrust_folded_{folded}"
        gm.add_submodule(name, FoldedConv(conv, bn))
        with gm.graph.inserting_before(prev):
            new = gm.graph.call_module(name, prev.args, prev.kwargs)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        gm.graph.erase_node(prev)
        folded += 1
    if not folded:
        return model
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()  # only drops references held by the new GraphModule
    for name in _ROOT_HOOKS:  # the same dict objects: hooks on the model (added later too) run around gm
        if hasattr(model, name):
            setattr(gm, name, getattr(model, name))
    return gm.eval()


#: Root forward hooks the folded module shares with the model (tracing runs forward(), not __call__).
_ROOT_HOOKS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A module computing ``model``'s eval-mode function with conv -> BatchNorm pairs folded (or ``model``)."""
    if any(m.training for m in model.modules()) or not any(isinstance(m, _BatchNorm) for m in model.modules()):
        return model
    key = _state_key(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    folded = _build(model)
    try:
        _CACHE[model] = (key, folded)
    except TypeError:  # not weak-referenceable
        pass
    return folded
