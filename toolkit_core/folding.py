"""BatchNorm folding: the one implementation, used by the attribution engine and by attacks.

In eval mode a BatchNorm is the per-channel affine map ``y = s z + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s`` (:func:`batchnorm_affine`). Following a
convolution ``z = W a + b`` it folds into one convolution ``W' = s W``, ``b' = s b + t``.

* The attribution engine folds at run time, from the same :func:`batchnorm_affine`, into the layer
  view its rules use (:func:`toolkit_core.attribution.canonizers.fold`); weights are never written.
* Attacks differentiate through :func:`fold_batchnorm(model) <fold_batchnorm>`: a ``torch.fx`` copy of
  the model that shares its untouched submodules and calls a :class:`FoldedConv` (buffers only) per
  conv -> BatchNorm pair -- the same function and input gradient up to float rounding, with one pass
  less over each activation. The user's model is never modified.

``fold_batchnorm`` returns the model itself (nothing folded) when folding could change what is
computed: a module in train mode, any forward hook or pre-hook on any module or registered globally
(e.g. an input normalization installed as a root pre-hook, which the traced copy would not run),
data-dependent control flow that ``torch.fx`` cannot trace, or no BatchNorm at all. The folded copy
is cached per model under a key of everything the trace depends on -- each module's identity, class,
mode and plain attributes (stride, padding, eps, a replaced ``forward``), and each parameter's and
buffer's storage and version counter -- so swapping a module, changing an attribute or updating a
weight in place all rebuild it.
"""

from __future__ import annotations

import itertools
import weakref

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["batchnorm_affine", "FoldedConv", "fold_batchnorm", "has_hooks"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def batchnorm_affine(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """Scale ``s = gamma / sqrt(var + eps)`` and shift ``t = beta - mean * s`` of an eval BatchNorm."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError(
            f"BatchNorm {type(bn).__name__} has track_running_stats=False; its eval-mode map depends on the "
            "batch, so it cannot be treated as a linear layer"
        )
    var, mean = bn.running_var.detach(), bn.running_mean.detach()
    s = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight.detach()
    t = -mean * s
    if bn.bias is not None:
        t = t + bn.bias.detach()
    return s, t


class FoldedConv(nn.Module):
    """``conv`` followed by eval-mode ``bn``, as one convolution with folded weight and bias buffers."""

    def __init__(self, conv: nn.Module, bn: _BatchNorm):
        super().__init__()
        with torch.no_grad():
            s, t = batchnorm_affine(bn)
            weight = conv.weight * s.reshape((-1,) + (1,) * (conv.weight.dim() - 1)).to(conv.weight.dtype)
            bias = t if conv.bias is None else conv.bias * s + t
        self.register_buffer("weight", weight.detach())
        self.register_buffer("bias", bias.detach().to(weight.dtype))
        self._forward_conv = conv._conv_forward  # keeps padding mode, stride, dilation, groups

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_conv(x, self.weight, self.bias)


def has_hooks(model: nn.Module) -> bool:
    """Whether any module of ``model`` has a forward/backward hook or pre-hook, or one is registered
    globally for every module."""
    from torch.nn.modules import module as _module

    if any(getattr(_module, g, None) for g in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                               "_global_backward_hooks", "_global_backward_pre_hooks")):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in model.modules())


def _plain(v) -> object:
    if isinstance(v, (int, float, str, bool, type(None))):
        return v
    if isinstance(v, (tuple, list)):
        return tuple(_plain(u) for u in v)
    return ("id", id(v))  # functions, other objects: by identity (a replaced forward changes the key)


def _state_key(model: nn.Module) -> tuple:
    modules = tuple(
        (name, id(m), type(m), m.training,
         tuple(sorted((k, _plain(v)) for k, v in vars(m).items() if not k.startswith("_") and k != "training")))
        for name, m in model.named_modules()
    )
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    return modules, tuple((n, t.data_ptr(), t._version, tuple(t.shape), t.dtype) for n, t in tensors)


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
        if not isinstance(conv, _CONVS):
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
    return gm.eval()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A module computing ``model``'s eval-mode function with conv -> BatchNorm pairs folded, or
    ``model`` itself when folding could change the function (see the module docstring)."""
    if any(m.training for m in model.modules()) or not any(isinstance(m, _BatchNorm) for m in model.modules()):
        return model
    if has_hooks(model):
        return model  # a hook (e.g. input normalization as a pre-hook) would not run in the traced copy
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
