"""Linear layers as the rules see them: ``z = W a + b`` with a forward and a transposed (backward) map.

:class:`LinearLayer` wraps a convolution, a dense layer, an eval-mode BatchNorm (a diagonal affine
map) or a convolution with its BatchNorm folded in (see :mod:`.canonizers`). Rules call
``layer.forward(a, w, b)`` with modified weights and ``layer.backward(g, w)`` for ``W^T g``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..folding import batchnorm_affine

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_INPUT = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input, 3: torch.nn.grad.conv3d_input}


class LinearLayer:
    """``z = W a + b`` for one call of a module; ``input_shape`` is the shape of ``a``."""

    def __init__(self, module: nn.Module, name: str, weight: Tensor, bias: Tensor | None, input_shape: torch.Size):
        self.module, self.name = module, name
        self.weight, self.bias = weight, bias
        self.input_shape = input_shape

    def forward(self, a: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def backward(self, g: Tensor, w: Tensor) -> Tensor:
        """``W^T g``: the gradient of ``a -> a W`` applied to ``g``."""
        raise NotImplementedError

    def unbias(self, z: Tensor) -> Tensor:
        """``z - b`` (broadcast like the forward pass)."""
        return z if self.bias is None else z - bias_view(self.bias, z)


def bias_view(b: Tensor, z: Tensor) -> Tensor:
    """``b`` shaped to broadcast against the output ``z``: a per-channel vector, or a full map of the
    output's shape (the bias of a layer with a folded input normalization)."""
    if b.dim() == z.dim():
        return b
    return b.view(1, -1, *([1] * (z.dim() - 2))) if z.dim() > 2 else b


def add_bias(z: Tensor, b: Tensor | None) -> Tensor:
    return z if b is None else z + bias_view(b, z)


class ConvLayer(LinearLayer):
    def __init__(self, module, name, weight, bias, input_shape):
        super().__init__(module, name, weight, bias, input_shape)
        self.n = weight.dim() - 2
        padding = module.padding
        if isinstance(padding, str):
            if padding != "valid":
                raise ValueError(
                    f"layer '{name}' ({type(module).__name__}) uses padding='{padding}'; the attribution "
                    "engine supports explicit integer padding or 'valid' -- rewrite the layer with integers"
                )
            padding = (0,) * self.n
        if module.padding_mode != "zeros":
            raise ValueError(
                f"layer '{name}' ({type(module).__name__}) uses padding_mode='{module.padding_mode}'; only "
                "zero padding is supported by the attribution engine"
            )
        self.stride, self.padding, self.dilation, self.groups = module.stride, padding, module.dilation, module.groups

    def forward(self, a, w, b=None):
        if b is not None and b.dim() > 1:
            return add_bias(_CONV_FN[self.n](a, w, None, self.stride, self.padding, self.dilation, self.groups), b)
        return _CONV_FN[self.n](a, w, b, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, g, w):
        return _CONV_INPUT[self.n](self.input_shape, w, g, self.stride, self.padding, self.dilation, self.groups)


class DenseLayer(LinearLayer):
    def forward(self, a, w, b=None):
        if b is not None and b.dim() > 1:
            return F.linear(a, w) + b
        return F.linear(a, w, b)

    def backward(self, g, w):
        return g @ w


class AffineLayer(LinearLayer):
    """Eval-mode BatchNorm as ``z = s * a + t`` per channel (``weight`` holds ``s``)."""

    def _view(self, v: Tensor, like: Tensor) -> Tensor:
        return v.view(1, -1, *([1] * (like.dim() - 2))) if like.dim() > 2 else v

    def forward(self, a, w, b=None):
        return add_bias(a * self._view(w, a), b)

    def backward(self, g, w):
        return g * self._view(w, g)


class InputFolded(LinearLayer):
    """``inner`` applied to ``a * s + t`` (an affine input normalization folded into the layer).

    ``z = W (s a + t) + b = (W s) a + [W t + b]``: the weight is ``W s`` (``s`` per input channel)
    and the bias the map ``W t + b``, computed with the layer's own padding, so the folded layer is
    exactly the normalized one, borders included.
    """

    def __init__(self, inner: LinearLayer, scale: Tensor, shift: Tensor):
        channels = inner.input_shape[1]
        if isinstance(inner, ConvLayer):
            if inner.groups != 1:
                raise ValueError("an input normalization can be folded into a convolution with groups=1 only")
            s = scale.reshape(1, channels, *([1] * inner.n))
        else:
            s = scale.reshape(1, channels)
        t = shift.expand(1, *inner.input_shape[1:]).to(inner.weight.dtype)
        with torch.no_grad():
            bias = inner.forward(t, inner.weight, inner.bias)
        super().__init__(inner.module, inner.name, inner.weight * s, bias, inner.input_shape)
        self.inner = inner

    def forward(self, a, w, b=None):
        return add_bias(self.inner.forward(a, w, None), b)

    def backward(self, g, w):
        return self.inner.backward(g, w)


def make_layer(module: nn.Module, name: str, input_shape: torch.Size) -> LinearLayer:
    """The :class:`LinearLayer` of a conv, dense or BatchNorm module (weights detached)."""
    if isinstance(module, CONV_TYPES):
        return ConvLayer(module, name, module.weight.detach(), _detach(module.bias), input_shape)
    if isinstance(module, nn.Linear):
        return DenseLayer(module, name, module.weight.detach(), _detach(module.bias), input_shape)
    if isinstance(module, BN_TYPES):
        s, t = batchnorm_affine(module)
        return AffineLayer(module, name, s, t, input_shape)
    raise TypeError(f"no linear-layer view for {type(module).__name__}")


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()
