"""Canonizers: make a model's layers fit the rules, reversibly.

* **BatchNorm folding.** An eval-mode BatchNorm ``y = s z + t`` that directly follows a convolution or
  dense layer ``z = W a + b`` is folded into it: ``W' = s W``, ``b' = s b + t``, and the conv's rule
  is applied to the folded layer. The engine folds *at run time*: it predicts the pairs from the
  module order (:func:`batchnorm_pairs`), checks during the forward pass that the BatchNorm really
  reads that layer's output (tensor identity), and builds the folded layer from detached copies
  (:func:`fold`). The model's parameters are never written, so nothing has to be restored. If the
  check fails the BatchNorm is treated as its own (diagonal) linear layer.
* **Input normalization.** An affine map of the input (``(x - mean) / std``, written with modules or
  functions) that feeds the first linear layer is folded into it (:class:`.layers.InputFolded`), so
  rules that produce relevance from the input (zB, flat, w^2) see the raw input ``x`` and its
  declared range (``model.input_range``), never the normalized tensor.
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

from .layers import BN_TYPES, CONV_TYPES, LinearLayer, batchnorm_affine, bias_view

__all__ = ["batchnorm_pairs", "flag_set", "fold", "is_leaf", "out_of_place"]


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
    return _OutputFolded(layer, name, s, t)


class _OutputFolded(LinearLayer):
    """``layer`` followed by a per-channel affine map; ``weight`` is computed on access (``s * W``),
    so no folded copy of the weights stays alive. Forward and transposed maps are the layer's own."""

    def __init__(self, layer: LinearLayer, name: str, s: torch.Tensor, t: torch.Tensor):
        b = t if layer.bias is None else bias_view(s, layer.bias) * layer.bias + bias_view(t, layer.bias)
        super().__init__(layer.module, name, None, b, layer.input_shape)
        self.layer, self.scale = layer, s.view(-1, *([1] * (layer.weight.dim() - 1)))

    @property
    def weight(self):
        return self.layer.weight * self.scale

    @weight.setter
    def weight(self, value):
        pass

    def forward(self, a, w, b=None):
        return self.layer.forward(a, w, b)

    def backward(self, g, w):
        return self.layer.backward(g, w)


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
