"""Rules of the modified-backprop engine: a rule is a few declarative lines (in the spirit of Zennit).

The engine propagates the *signal* ``c = R / z`` (relevance per unit of activation, the quantity
that plain autograd carries as "the gradient"), so that every linear operation the engine does not
hook (residual additions, concatenation, flatten, max pooling, average pooling) automatically applies
the z-rule (LRP-0), and the input relevance is ``R(x) = x * c(x)``. A rule for a linear layer
``z = W a + b`` therefore returns ``c_in = W'^T (c_out * z / stabilize(z'))``, where ``W'`` and
``z' = W' a (+ b)`` are what distinguishes the rules:

===============  ====================================================  ==================
rule             ``W'``                                                denominator ``z'``
===============  ====================================================  ==================
LRP-0            ``W``                                                 ``z`` (0/0 := 0)
LRP-epsilon      ``W``                                                 ``z + eps sign z``
LRP-gamma        ``W + gamma W+``                                      ``a (W + gamma W+)``
z+ (DTD)         ``W+``                                                ``a W+``
===============  ====================================================  ==================

A rule declares ``weight`` (the parameter modifier), ``use_bias`` and ``epsilon``::

    class ZPlus(LinearRule):
        name = "zplus"
        use_bias = False
        def weight(self, w): return w.clamp(min=0)

Rules that do not factor through the activations (flat, w^2, zB) set ``produces_relevance = True``
and return the relevance ``R_in`` itself; the engine adds it to the input relevance when the layer
reads the model input, else converts it to the signal ``R_in / a``.

Activation rules (GBP, deconvnet, RectGrad) subclass :class:`ActivationRule` and map the incoming
gradient at an activation's output to the gradient at its input.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
    "Rule", "LinearRule", "ActivationRule", "Gradient", "Pass", "Epsilon", "LRP0", "Gamma", "ZPlus", "AlphaBeta",
    "Flat", "WSquare", "ZBox", "WinnerTakesAll", "MAX_POOL_DIMS", "masked", "stabilize", "stabilized_divide",
    "BUILTIN_RULES",
]


def stabilize(den: Tensor, eps: float) -> Tensor:
    """``den + eps * sign(den)`` with ``sign(0) = 1`` (a new tensor).

    Written with a float +-1 factor rather than ``torch.where``, which is several times slower on
    the CPU; ``den + eps * (+-1)`` rounds exactly like ``den +- eps``.
    """
    sign = (den < 0).to(den.dtype).mul_(-2.0).add_(1.0)
    return torch.add(den, sign, alpha=eps, out=sign)


def masked(g: Tensor, mask: Tensor) -> Tensor:
    """``g`` where the boolean ``mask`` is set, else 0 (``g * mask``; much faster than ``torch.where``
    on the CPU)."""
    return g * mask.view(torch.uint8)


def _same(a: Tensor, b: Tensor) -> bool:
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride())


def stabilized_divide(num: Tensor, den: Tensor, eps: float) -> Tensor:
    """``num / (den + eps * sign(den))``, ``sign(0) = 1``; a zero denominator (only possible for
    ``eps == 0``) gives 0. ``num is den`` (the epsilon rule's ``z / stab(z)``) takes a 3-pass path."""
    if eps > 0:
        if _same(num, den):
            a = den.abs()
            return a.div_(a + eps)  # z / (z + eps sign z) = |z| / (|z| + eps)
        stab = stabilize(den, eps)
        return torch.div(num, stab, out=stab) if stab.shape == num.shape else num / stab
    out = num / den
    return out.masked_fill_(den == 0, 0.0)


class Rule:
    """Base of all rules: ``forward`` (no autograd) prepares a state, ``backward`` uses it.

    ``forward(layer, a, z) -> state`` runs right after the layer's forward pass with the layer input
    ``a`` and output ``z``; it must not keep ``z`` itself (later in-place ops may change it).
    ``backward(layer, state, g) -> Tensor`` gets the signal ``g`` at the layer output and returns the
    signal at its input (or the relevance, for ``produces_relevance`` rules).
    """

    name: ClassVar[str] = "rule"
    produces_relevance: ClassVar[bool] = False

    def forward(self, layer: Any, a: Tensor, z: Tensor) -> Any:
        return None

    def backward(self, layer: Any, state: Any, g: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def keeps_inplace(self, module: torch.nn.Module) -> bool:
        """Whether ``module`` may keep running in place: ``forward`` then gets ``a is z`` (the output
        written over the input) and must need nothing else. Saves a copy per layer; default False."""
        return False

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


class Gradient(Rule):
    """Leave the layer alone: plain autograd (the engine does not hook it)."""

    name = "gradient"


class LinearRule(Rule):
    """``c_in = W'^T (c_out * z / stabilize(z'))`` with ``W' = weight(W)``, ``z' = a W' (+ b)``."""

    name = "linear_rule"
    epsilon: float = 1e-6
    use_bias: bool = True
    modifies_weight: ClassVar[bool] = True
    divide = staticmethod(stabilized_divide)
    multiply = staticmethod(torch.mul)

    def weight(self, w: Tensor) -> Tensor:
        return w

    def _w(self, layer) -> Tensor:
        return layer.weight if not self.modifies_weight else self.weight(layer.weight)

    def forward(self, layer, a, z):
        if not self.modifies_weight and self.use_bias:
            return self.divide(z, z, self.epsilon)
        den = layer.forward(a, self._w(layer), layer.bias if self.use_bias else None)
        return self.divide(z, den, self.epsilon)

    def backward(self, layer, state, g):
        # modified weights are recomputed here rather than kept: the state holds one tensor of z's size
        return layer.backward(self.multiply(g, state), self._w(layer))


class Epsilon(LinearRule):
    """LRP-epsilon (Bach et al. 2015): ``R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k``."""

    name = "lrp_epsilon"
    modifies_weight = False

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)


class LRP0(Epsilon):
    """LRP-0: ``R_j = sum_k a_j w_jk / z_k R_k`` (``0/0 := 0``); equals input x gradient."""

    name = "lrp_0"

    def __init__(self):
        self.epsilon = 0.0


class Gamma(LinearRule):
    """LRP-gamma: ``R_j = sum_k a_j (w_jk + gamma w_jk+) / sum_j a_j (w_jk + gamma w_jk+) R_k``."""

    name = "lrp_gamma"
    use_bias = False

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6):
        self.gamma, self.epsilon = float(gamma), float(epsilon)

    def weight(self, w):
        return w + self.gamma * w.clamp(min=0)


class ZPlus(LinearRule):
    """z+ (Montavon et al. 2017): ``R_j = sum_k a_j w_jk+ / sum_j a_j w_jk+ R_k`` (for ``a >= 0``)."""

    name = "zplus"
    use_bias = False

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)

    def weight(self, w):
        return w.clamp(min=0)


class AlphaBeta(Rule):
    """``R_j = sum_k [alpha (a_j w_jk)+ / sum_j (a_j w_jk)+ - beta (a_j w_jk)- / sum_j (a_j w_jk)-] R_k``.

    Bach et al. 2015; ``alpha - beta = 1`` keeps relevance conserved. Signed inputs are handled
    exactly (``(a w)+ = a+ w+ + a- w-``); non-negative inputs take a two-convolution fast path.
    """

    name = "lrp_alpha_beta"
    divide = staticmethod(stabilized_divide)

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, epsilon: float = 1e-6):
        if abs(alpha - beta - 1) > 1e-6:
            raise ValueError(f"alpha - beta must be 1 for a conservative rule, got alpha={alpha}, beta={beta}")
        self.alpha, self.beta, self.epsilon = float(alpha), float(beta), float(epsilon)

    def forward(self, layer, a, z):
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        nonneg = bool((a >= 0).all())
        if nonneg:
            zp = layer.forward(a, wp, None)
            zn = layer.forward(a, layer.weight, None) - zp if layer.bias is None else layer.unbias(z) - zp
        else:
            ap, an = a.clamp(min=0), a.clamp(max=0)
            zp = layer.forward(ap, wp, None) + layer.forward(an, wn, None)
            zn = layer.forward(ap, wn, None) + layer.forward(an, wp, None)
        sp = self.divide(z, zp, self.epsilon) * self.alpha
        sn = self.divide(z, zn, self.epsilon) * self.beta
        return sp, sn, None if nonneg else a > 0

    def backward(self, layer, state, g):
        sp, sn, pos = state
        w = layer.weight
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        if pos is None:
            return layer.backward(g * sp, wp) - layer.backward(g * sn, wn)
        on_pos = layer.backward(g * sp, wp) - layer.backward(g * sn, wn)
        on_neg = layer.backward(g * sp, wn) - layer.backward(g * sn, wp)
        return torch.where(pos, on_pos, on_neg)


class Flat(LinearRule):
    """Flat (Lapuschkin et al. 2019): ``R_j = sum_k R_k / n_k``, ``n_k`` = inputs of neuron k."""

    name = "lrp_flat"
    produces_relevance = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)

    def weight(self, w):
        return torch.ones_like(w)

    def forward(self, layer, a, z):
        ones = torch.ones((1, *a.shape[1:]), dtype=a.dtype, device=a.device)
        return self.divide(z, layer.forward(ones, self.weight(layer.weight), None), self.epsilon)


class WSquare(Flat):
    """w^2 (Montavon et al. 2017): ``R_j = sum_k w_jk^2 / sum_j w_jk^2 R_k``."""

    name = "lrp_wsquare"

    def weight(self, w):
        return w * w


class ZBox(Rule):
    """zB (Montavon et al. 2017), first layer, ``l <= x <= h``.

    ``R_j = sum_k (x_j w_jk - l_j w_jk+ - h_j w_jk-) / sum_j (x_j w_jk - l_j w_jk+ - h_j w_jk-) R_k``.
    ``low``/``high``: floats or tensors broadcastable to the input; ``None`` takes the per-channel
    minimum/maximum of the batch.
    """

    name = "zbox"
    produces_relevance = True
    divide = staticmethod(stabilized_divide)

    def __init__(self, low: float | Tensor | None = None, high: float | Tensor | None = None, epsilon: float = 1e-6):
        self.low, self.high, self.epsilon = low, high, float(epsilon)

    def _bound(self, value, a, reduce):
        if value is None:
            dims = [d for d in range(a.dim()) if d != 1] if a.dim() > 1 else [0]
            return reduce(a, dims)
        return torch.as_tensor(value, dtype=a.dtype, device=a.device).expand_as(a)

    def forward(self, layer, a, z):
        low = self._bound(self.low, a, lambda t, d: t.amin(dim=d, keepdim=True)).expand_as(a)
        high = self._bound(self.high, a, lambda t, d: t.amax(dim=d, keepdim=True)).expand_as(a)
        w = layer.weight
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        den = layer.forward(a, w, None) - layer.forward(low, wp, None) - layer.forward(high, wn, None)
        return self.divide(z, den, self.epsilon), a, low, high

    def backward(self, layer, state, g):
        ratio, a, low, high = state
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        s = g * ratio
        return a * layer.backward(s, layer.weight) - low * layer.backward(s, wp) - high * layer.backward(s, wn)


class Pass(Rule):
    """Pass rule for an elementwise activation ``a = f(z)``: ``R_z = R_a``, i.e. ``c_z = c_a * a / z``.

    At a ReLU ``a / z = 1[z > 0]`` (with ``0 / 0 := 0``), the ReLU's own gradient; the state is then
    kept as a one-byte mask instead of a float tensor (a quarter of the memory autograd would keep).
    """

    name = "pass"

    def forward(self, layer, a, z):
        if type(layer) is torch.nn.ReLU:
            return a > 0  # = z > 0, so the ReLU may stay in place
        return stabilized_divide(z, a, 0.0)

    def keeps_inplace(self, module):
        return type(module) is torch.nn.ReLU

    def backward(self, layer, state, g):
        return masked(g, state) if state.dtype == torch.bool else g * state


#: max-pooling module types and their number of pooled (spatial) dimensions
MAX_POOL_DIMS: dict[type[torch.nn.Module], int] = {
    torch.nn.MaxPool1d: 1, torch.nn.MaxPool2d: 2, torch.nn.MaxPool3d: 3,
    torch.nn.AdaptiveMaxPool1d: 1, torch.nn.AdaptiveMaxPool2d: 2, torch.nn.AdaptiveMaxPool3d: 3,
}


class WinnerTakesAll(Rule):
    """Max pooling: the signal goes to the maximal input of each window -- the plain gradient.

    The engine applies it to every max-pooling layer, running the layer with ``return_indices=True``
    and handing the indices to :meth:`forward` as ``z``. It keeps only each window's argmax (as int32
    where it fits) instead of the pooling input and int64 indices autograd would keep.
    """

    name = "max_pool"

    def forward(self, layer, a, z):
        spatial = next(d for t, d in MAX_POOL_DIMS.items() if isinstance(layer, t))
        if math.prod(a.shape[-spatial:]) < 2**31:
            z = z.to(torch.int32)
        return z, a.shape, a.dim() - spatial

    def backward(self, layer, state, g):
        idx, shape, start = state  # indices are flat within each plane of the last `spatial` dims
        out = g.new_zeros((*shape[:start], math.prod(shape[start:])))
        out.scatter_add_(start, idx.flatten(start).long(), g.flatten(start))
        return out.view(shape)


class ActivationRule(Rule):
    """A rule for an elementwise activation; ``layer`` is the activation module itself."""

    name = "activation_rule"
    #: the activation modules the rule is defined for (subclasses count: ReLU6 is a Hardtanh)
    supports: ClassVar[tuple[type[torch.nn.Module], ...]] = (torch.nn.ReLU, torch.nn.Hardtanh)

    def check(self, module: torch.nn.Module) -> str | None:
        """``None`` when the rule is defined for ``module``, else why not (the engine's error quotes it)."""
        if isinstance(module, self.supports):
            return None
        kinds = ", ".join(t.__name__ for t in self.supports)
        return f"the rule {self.name!r} is defined for {kinds} (or a subclass) only"

    @staticmethod
    def active(module: torch.nn.Module, a: Tensor, z: Tensor) -> Tensor:
        """Where the activation's forward derivative is non-zero (``z > 0`` for ReLU)."""
        lo = getattr(module, "min_val", 0.0)
        hi = getattr(module, "max_val", None)
        mask = a > lo
        if hi is not None:
            mask &= a < hi
        return mask


#: rules the core ships (plugins add theirs through their method classes' ``rules``).
BUILTIN_RULES: dict[str, type[Rule]] = {
    "gradient": Gradient, "pass": Pass, "lrp_0": LRP0, "lrp_epsilon": Epsilon, "lrp_gamma": Gamma,
    "zplus": ZPlus, "lrp_alpha_beta": AlphaBeta, "lrp_flat": Flat, "lrp_wsquare": WSquare, "zbox": ZBox,
}
