"""Canonizers: make a model's layers fit the rules, reversibly.

* **BatchNorm folding.** An eval-mode BatchNorm ``y = s z + t`` that directly follows a convolution or
  dense layer ``z = W a + b`` is folded into it: ``W' = s W``, ``b' = s b + t``, and the conv's rule
  is applied to the folded layer. The engine folds *at run time*: it predicts the pairs from the
  module order (:func:`batchnorm_pairs`), checks during the forward pass that the BatchNorm really
  reads that layer's output (tensor identity), and builds the folded layer from detached copies
  (:func:`fold`). The model's parameters are never written, so nothing has to be restored. If the
  check fails the BatchNorm is treated as its own (diagonal) linear layer.
  :func:`folded_batchnorm` is the static, reversible variant for users who want the folded weights
  in the model itself (it restores the original parameters on exit, also after an exception).
* **Residual additions** need no canonizer: the engine propagates ``c = R / z``, for which the plain
  gradient of ``y = u + v`` is exactly the proportional split ``R_u = u / y * R_y`` (the epsilon -> 0
  limit of ``u / (y + eps sign y) R_y``). The same holds for concatenation (DenseNet) and flatten.
* **In-place activations** (``nn.ReLU(inplace=True)``) are switched to out-of-place while the engine
  runs (:func:`out_of_place`) and switched back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .layers import BN_TYPES, CONV_TYPES, ConvLayer, DenseLayer, LinearLayer, batchnorm_affine

__all__ = ["batchnorm_pairs", "flag_set", "fold", "folded_batchnorm", "is_leaf", "out_of_place"]


def is_leaf(module: nn.Module) -> bool:
    """True when ``module`` has no sub-modules (a registered ``None`` does not count)."""
    return not any(c is not None for c in module._modules.values())


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if is_leaf(m)]


def batchnorm_pairs(model: nn.Module) -> dict[str, str]:
    """``{linear layer name: batchnorm name}`` for each BatchNorm registered right after a conv/dense
    layer with as many output channels as the BatchNorm has features (the pattern of torchvision's
    ResNet, MobileNet, VGG-BN, DenseNet stem). The engine verifies each pair during the forward pass.
    """
    pairs = {}
    leaves = _leaves(model)
    for (pname, prev), (name, m) in zip(leaves[:-1], leaves[1:]):
        if not isinstance(m, BN_TYPES) or m.running_var is None:
            continue
        if isinstance(prev, CONV_TYPES) and prev.out_channels == m.num_features:
            pairs[pname] = name
        elif isinstance(prev, nn.Linear) and prev.out_features == m.num_features:
            pairs[pname] = name
    return pairs


def fold(layer: LinearLayer, bn: nn.Module, name: str) -> LinearLayer:
    """The layer ``a -> bn(layer(a))`` as one linear layer with ``W' = s W``, ``b' = s b + t``."""
    s, t = batchnorm_affine(bn)
    b = t if layer.bias is None else s * layer.bias + t
    cls = _FoldedConv if isinstance(layer, ConvLayer) else _FoldedDense
    folded = cls(layer.module, name, layer.weight, b, layer.input_shape)
    folded.scale = s.view(-1, *([1] * (layer.weight.dim() - 1)))
    return folded


class _Folded:
    """``weight`` is computed on access (``s * W``), so no folded copy of the weights stays alive."""

    scale: torch.Tensor

    @property
    def weight(self):
        return self._raw_weight * self.scale

    @weight.setter
    def weight(self, value):
        self._raw_weight = value


class _FoldedConv(_Folded, ConvLayer):
    pass


class _FoldedDense(_Folded, DenseLayer):
    pass


@contextlib.contextmanager
def folded_batchnorm(model: nn.Module) -> Iterator[dict[str, str]]:
    """Fold every predicted (conv, BatchNorm) pair into the conv's weights and make the BatchNorm an
    identity, for the duration of the block; the original parameters and buffers come back on exit.

    The model must be in eval mode (folding uses the running statistics).
    """
    pairs = batchnorm_pairs(model)
    modules = dict(model.named_modules())
    saved: list[tuple[nn.Module, dict[str, torch.Tensor | None]]] = []
    try:
        with torch.no_grad():
            for cname, bname in pairs.items():
                conv, bn = modules[cname], modules[bname]
                saved.append((conv, {"weight": conv.weight.detach().clone(),
                                     "bias": None if conv.bias is None else conv.bias.detach().clone()}))
                saved.append((bn, {k: getattr(bn, k).detach().clone() for k in
                                   ("weight", "bias", "running_mean", "running_var") if getattr(bn, k) is not None}))
                s, t = batchnorm_affine(bn)
                conv.weight.mul_(s.view(-1, *([1] * (conv.weight.dim() - 1))))
                if conv.bias is None:
                    conv.bias = nn.Parameter(t.clone(), requires_grad=conv.weight.requires_grad)
                    saved[-2][1]["_added_bias"] = True  # type: ignore[assignment]
                else:
                    conv.bias.mul_(s).add_(t)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                if bn.weight is not None:
                    bn.weight.fill_(1.0)
                if bn.bias is not None:
                    bn.bias.zero_()
        yield pairs
    finally:
        with torch.no_grad():
            for module, values in saved:
                if values.pop("_added_bias", False):
                    module.bias = None
                for k, v in values.items():
                    if v is not None:
                        getattr(module, k).copy_(v)


@contextlib.contextmanager
def flag_set(modules: Iterable[nn.Module], attr: str, value: Any) -> Iterator[None]:
    """Set the attribute ``attr`` to ``value`` on ``modules`` and restore the old values on exit."""
    changed = [(m, getattr(m, attr)) for m in modules if getattr(m, attr) != value]
    for m, _ in changed:
        setattr(m, attr, value)
    try:
        yield
    finally:
        for m, old in changed:
            setattr(m, attr, old)


def out_of_place(model: nn.Module, only: set[nn.Module] | None = None) -> contextlib.AbstractContextManager:
    """Set ``inplace=False`` on every module that has the flag (or on those in ``only``), and restore
    it on exit."""
    return flag_set([m for m in model.modules() if getattr(m, "inplace", False) is True
                     and (only is None or m in only)], "inplace", False)
