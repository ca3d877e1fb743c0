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
LRP-gamma        ``W + gamma W+``                                      ``a (W + gamma W+) + b + gamma b+``
z+ (DTD)         ``W+``                                                ``a W+ + b+``
===============  ====================================================  ==================

(shown for ``a >= 0``; z+, gamma and alpha-beta take Zennit's sign-aware forms for signed inputs, and
the bias terms go with ``use_bias=True``, the default, as in Montavon et al. 2019 and Zennit.)

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

Every rule the toolkit ships is defined here (:data:`BUILTIN_RULES`); plugins say which rules their
method uses (a composite) and may hand a rule a fused kernel for one of its ``kernel_slots``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from .layers import add_bias, bias_view
from .selection import rectify

__all__ = [
    "GATES", "RELUS", "gate_value",
    "Rule", "LinearRule", "ActivationRule", "Gradient", "Pass", "Epsilon", "LRP0", "Gamma", "ZPlus", "AlphaBeta",
    "Flat", "WSquare", "ZBox", "WinnerTakesAll", "MAX_POOL_DIMS", "masked", "stabilize", "stabilized_divide",
    "GuidedReLU", "DeconvReLU", "RectifiedReLU", "guided_relu_grad", "nonnegative", "BUILTIN_RULES",
]


def stabilize(den: Tensor, eps: float) -> Tensor:
    """``den + eps * sign(den)`` with ``sign(0) = 1`` for both zeros (a new tensor).

    ``copysign(eps, den + 0.0) + den``: adding ``+0.0`` turns ``-0.0`` into ``+0.0``, so both zeros get
    ``+eps``; the sum rounds exactly like ``den +- eps``. One new tensor, every pass in place: on the
    CPU each fresh tensor costs its page faults, and comparisons, ``torch.where`` and bool-to-float
    casts are several times slower per element than ``copysign`` and additions.
    """
    out = den + 0.0
    torch.copysign(_scalar(eps, den), out, out=out)
    return out.add_(den)


def _scalar(v: float, like: Tensor) -> Tensor:
    return torch.tensor(v, dtype=like.dtype, device=like.device)


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
    #: names of the rule's elementwise steps that a method may replace with a kernel of the same
    #: signature and result (a fused Triton version); the defaults are this module's PyTorch functions
    kernel_slots: ClassVar[tuple[str, ...]] = ()

    def with_kernels(self, kernels: Mapping[str, Callable[..., Tensor]]) -> Rule:
        """Use ``kernels[slot]`` for each of :attr:`kernel_slots` given (e.g. the lrp plugin's fused
        ``divide``); returns ``self``. The engine's methods pass theirs (``ModifiedBackprop.rule_kernels``)."""
        for slot in self.kernel_slots:
            if slot in kernels:
                setattr(self, slot, kernels[slot])
        return self

    def forward(self, layer: Any, a: Tensor, z: Tensor) -> Any:
        return None

    def backward(self, layer: Any, state: Any, g: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def keeps_inplace(self, module: torch.nn.Module) -> bool:
        """Whether ``module`` may keep running in place: ``forward`` then gets ``a is z`` (the output
        written over the input) and must need nothing else. Saves a copy per layer; default False."""
        return False

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in self.kernel_slots}
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
    kernel_slots = ("divide",)
    divide = staticmethod(stabilized_divide)

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
        return layer.backward(g * state, self._w(layer))


class Epsilon(LinearRule):
    """LRP-epsilon (Bach et al. 2015): ``R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k``."""

    name = "lrp_epsilon"
    modifies_weight = False

    def __init__(self, epsilon: float = 1e-6, use_bias: bool = True):
        self.epsilon, self.use_bias = float(epsilon), bool(use_bias)


class LRP0(Epsilon):
    """LRP-0: ``R_j = sum_k a_j w_jk / z_k R_k`` (``0/0 := 0``); equals input x gradient."""

    name = "lrp_0"

    def __init__(self):
        self.epsilon = 0.0


def nonnegative(a: Tensor) -> bool:
    """``a >= 0`` everywhere (one reduction, no boolean temporary; NaN counts as negative)."""
    return a.numel() == 0 or bool(a.min() >= 0)


def _any_nonzero(t: Tensor) -> bool:
    """Whether ``t`` has a nonzero entry: one min/max reduction, no temporary (NaN counts as zero)."""
    if t.numel() == 0:
        return False
    lo, hi = torch.aminmax(t)
    return bool(lo < 0) or bool(hi > 0)


def _pos_neg(w: Tensor) -> tuple[Tensor, Tensor]:
    return w.clamp(min=0), w.clamp(max=0)


class _SignAware(Rule):
    """Base of the rules defined by positive and negative parts (z+, gamma, alpha-beta).

    They are written in Zennit's sign-aware form (Montavon et al. 2019, Zennit's stock rules): an
    input ``a = a+ + a-`` contributes ``a+ w+`` and ``a- w-`` to the positive part of ``z``, so the
    rules are defined for signed inputs (linear bottlenecks, the first layer) and reduce to the
    textbook forms for ``a >= 0`` (the inputs after a ReLU), for which a faster path is taken. The
    (modified) bias takes part in the denominator (``use_bias=False`` leaves it out).
    """

    kernel_slots = ("divide",)
    divide = staticmethod(stabilized_divide)

    def _bias(self, layer, part: Tensor | None) -> Tensor | None:
        return part if self.use_bias else None


class ZPlus(_SignAware):
    """z+ (Montavon et al. 2017; sign-aware as Zennit's ``ZPlus``, i.e. alpha-beta with (1, 0)).

    ``R_j = sum_k (a_j+ w_jk+ + a_j- w_jk-) / (sum_j (a_j+ w_jk+ + a_j- w_jk-) + b_k+) R_k``.
    """

    name = "zplus"

    def __init__(self, epsilon: float = 1e-6, use_bias: bool = True):
        self.epsilon, self.use_bias = float(epsilon), bool(use_bias)

    def forward(self, layer, a, z):
        wp = layer.weight.clamp(min=0)
        bp = self._bias(layer, None if layer.bias is None else layer.bias.clamp(min=0))
        if nonnegative(a):
            return self.divide(z, layer.forward(a, wp, bp), self.epsilon), None
        wn = layer.weight.clamp(max=0)
        den = layer.forward(a.clamp(min=0), wp, bp) + layer.forward(a.clamp(max=0), wn, None)
        return self.divide(z, den, self.epsilon), a >= 0

    def backward(self, layer, state, g):
        ratio, pos = state
        s = g * ratio
        if pos is None:
            return layer.backward(s, layer.weight.clamp(min=0))
        wp, wn = _pos_neg(layer.weight)
        return torch.where(pos, layer.backward(s, wp), layer.backward(s, wn))


class Gamma(_SignAware):
    """LRP-gamma (Montavon et al. 2019), sign-aware as Zennit's ``Gamma``.

    For ``z_k > 0``: ``R_j = sum_k (a_j+ (w + gamma w+)_jk + a_j- (w + gamma w-)_jk) / (sum_j (same)
    + b_k + gamma b_k+) R_k``; for ``z_k < 0`` the roles of ``w+`` and ``w-`` (and ``b+``, ``b-``) swap.
    For ``a >= 0`` and ``z_k > 0`` this is the textbook rule
    ``a_j (w_jk + gamma w_jk+) / (sum_j a_j (w_jk + gamma w_jk+) + b_k + gamma b_k+)``.
    """

    name = "lrp_gamma"

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6, use_bias: bool = True):
        self.gamma, self.epsilon, self.use_bias = float(gamma), float(epsilon), bool(use_bias)

    def forward(self, layer, a, z):
        w, gam = layer.weight, self.gamma
        b = layer.bias if self.use_bias else None
        up = z > 0
        down = ~up
        # base = a W + b (or a W without the bias); q = a W+ + b+ (the part gamma scales for z > 0)
        base = z if b is not None or layer.bias is None else layer.unbias(z)
        if nonnegative(a):
            q = layer.forward(a, w.clamp(min=0), None)
            pos = None
        else:
            ap, an = a.clamp(min=0), a.clamp(max=0)
            wp = w.clamp(min=0)
            pw, pp, np_ = layer.forward(ap, w, None), layer.forward(ap, wp, None), layer.forward(an, wp, None)
            # a+ W+ + a- W- = a+ W+ + (a W - a+ W) - a- W+
            q = pp + layer.unbias(z) - pw - np_
            pos = a >= 0
        if b is not None:
            q = q.add_(bias_view(b.clamp(min=0), z))
        # z > 0: base + gamma q;  z <= 0: base + gamma (base - q), the same rule with w- (and b-) for w+
        # (for a >= 0: a (W + gamma W-) + b + gamma b- = z + gamma (z - a W+ - b+)). The choice is made
        # with 0/1 factors (exact, and much faster than torch.where on the CPU), in place.
        t = torch.sub(base, q).mul_(down.view(torch.uint8)).add_(q.mul_(up.view(torch.uint8)))
        den = torch.add(base, t, alpha=gam, out=t)
        return self.divide(z, den, self.epsilon), down, pos

    def backward(self, layer, state, g):
        ratio, down, pos = state
        w, gam = layer.weight, self.gamma
        wp = w.clamp(min=0)
        s = ratio.mul_(g)  # the state is used once: the signal c * z / den, in place
        sn = masked(s, down)  # the signal at outputs z <= 0
        if pos is None and not _any_nonzero(sn):
            # nothing arrives where z <= 0 (the layer feeds a ReLU, directly or through a BatchNorm):
            # one transposed map with W + gamma W+
            return layer.backward(s, wp.mul_(gam).add_(w))
        # (w + gamma w+)^T sp + (w + gamma w-)^T sn with sp = s - sn, w- = w - w+:
        # w^T (s + gamma sn) + gamma w+^T (s - 2 sn)  (and for inputs a < 0: w^T (s + gamma sp) + gamma w+^T (sn - sp))
        if pos is None:
            u = torch.add(s, sn, alpha=gam)
            v = s.sub_(sn, alpha=2.0)
            return layer.backward(u, w).add_(layer.backward(v, wp), alpha=gam)
        sp = s - sn
        on_pos = layer.backward(sn.mul(gam).add_(s), w) + gam * layer.backward(sp - sn, wp)
        on_neg = layer.backward(sp.mul(gam).add_(s), w) + gam * layer.backward(sn - sp, wp)
        return torch.where(pos, on_pos, on_neg)


class AlphaBeta(_SignAware):
    """``R_j = sum_k [alpha (a w)+_jk / (sum_j (a w)+_jk + b_k+) - beta (a w)-_jk / (sum_j (a w)-_jk + b_k-)] R_k``.

    Bach et al. 2015; ``alpha - beta = 1`` keeps relevance conserved. Signed inputs are handled
    exactly (``(a w)+ = a+ w+ + a- w-``, as Zennit's ``AlphaBeta``); non-negative inputs take a
    two-convolution fast path.
    """

    name = "lrp_alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, epsilon: float = 1e-6, use_bias: bool = True):
        if abs(alpha - beta - 1) > 1e-6 or alpha < 0 or beta < 0:
            raise ValueError(
                f"alpha - beta must be 1 (and both >= 0) for a conservative rule, got alpha={alpha}, beta={beta}"
            )
        self.alpha, self.beta, self.epsilon, self.use_bias = float(alpha), float(beta), float(epsilon), bool(use_bias)

    def forward(self, layer, a, z):
        wp, wn = _pos_neg(layer.weight)
        b = layer.bias
        bp = self._bias(layer, None if b is None else b.clamp(min=0))
        bn = self._bias(layer, None if b is None else b.clamp(max=0))
        nonneg = nonnegative(a)
        if nonneg:
            p = layer.forward(a, wp, None)
            zp, zn = add_bias(p, bp), add_bias(layer.unbias(z) - p, bn)
        else:
            ap, an = a.clamp(min=0), a.clamp(max=0)
            zp = add_bias(layer.forward(ap, wp, None) + layer.forward(an, wn, None), bp)
            zn = add_bias(layer.forward(ap, wn, None) + layer.forward(an, wp, None), bn)
        sp = self.divide(z, zp, self.epsilon) * self.alpha
        sn = self.divide(z, zn, self.epsilon) * self.beta
        return sp, sn, None if nonneg else a >= 0

    def backward(self, layer, state, g):
        sp, sn, pos = state
        wp, wn = _pos_neg(layer.weight)
        on_pos = layer.backward(g * sp, wp) - layer.backward(g * sn, wn)
        if pos is None:
            return on_pos
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
    ``low``/``high``: floats or tensors broadcastable to the input. They are never taken from the
    batch (a sample's map would depend on the other samples): without them the model's declared
    input range ``model.input_range = (low, high)`` is used (the engine folds an input normalization
    into the first layer, so that range is the raw input's); with neither, the rule raises.
    """

    name = "zbox"
    produces_relevance = True
    kernel_slots = ("divide",)
    divide = staticmethod(stabilized_divide)

    def __init__(self, low: float | Tensor | None = None, high: float | Tensor | None = None, epsilon: float = 1e-6):
        self.low, self.high, self.epsilon = low, high, float(epsilon)

    def bounds(self, layer, a: Tensor) -> tuple[Tensor, Tensor]:
        declared = getattr(layer, "input_range", None)
        low, high = self.low, self.high
        if (low is None or high is None) and declared is not None:
            low = declared[0] if low is None else low
            high = declared[1] if high is None else high
        if low is None or high is None:
            raise ValueError(
                f"zB at layer '{getattr(layer, 'name', '?')}' needs the input bounds: pass low= and high= "
                "(e.g. low=0.0, high=1.0 for images in [0, 1]) or declare model.input_range = (low, high); "
                "they are never taken from the batch"
            )
        as_t = lambda v: torch.as_tensor(v, dtype=a.dtype, device=a.device).expand_as(a)  # noqa: E731
        return as_t(low), as_t(high)

    def forward(self, layer, a, z):
        low, high = self.bounds(layer, a)
        w = layer.weight
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        den = layer.forward(a, w, None) - layer.forward(low, wp, None) - layer.forward(high, wn, None)
        return self.divide(z, den, self.epsilon), a, low, high

    def backward(self, layer, state, g):
        ratio, a, low, high = state
        wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
        s = g * ratio
        return a * layer.backward(s, layer.weight) - low * layer.backward(s, wp) - high * layer.backward(s, wn)


#: activations of the form ``f(x) = x * s(x)`` that the engine treats as gates (``s`` held constant)
GATES: tuple[type[torch.nn.Module], ...] = (torch.nn.GELU, torch.nn.SiLU, torch.nn.Hardswish, torch.nn.Mish)
#: piecewise-linear activations ``f(x) = x * 1[lo < x < hi]`` (ReLU6 is a Hardtanh)
RELUS: tuple[type[torch.nn.Module], ...] = (torch.nn.ReLU, torch.nn.Hardtanh)


def gate_value(module: torch.nn.Module, x: Tensor) -> Tensor:
    """``s(x)`` of a gate activation ``f(x) = x * s(x)`` (Phi for GELU, sigmoid for SiLU, ...)."""
    if isinstance(module, torch.nn.GELU):
        if module.approximate == "tanh":
            return 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        return 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))
    if isinstance(module, torch.nn.SiLU):
        return torch.sigmoid(x)
    if isinstance(module, torch.nn.Hardswish):
        return (x + 3).clamp(0, 6) / 6
    if isinstance(module, torch.nn.Mish):
        return torch.tanh(torch.nn.functional.softplus(x))
    raise TypeError(f"{type(module).__name__} is not a gate activation")


class Pass(Rule):
    """Pass rule for an elementwise activation ``a = f(z)``: ``R_z = R_a``, i.e. ``c_z = c_a * a / z``.

    At a ReLU ``a / z = 1[z > 0]`` (with ``0 / 0 := 0``), the ReLU's own gradient; the state is then
    kept as a one-byte mask instead of a float tensor (a quarter of the memory autograd would keep).
    At a gate ``f(z) = z s(z)`` (GELU, SiLU, Hardswish, Mish) ``a / z = s(z)``: the gate is held
    constant, as in the LRP literature (Ali et al. 2022; Achtibat et al. 2024).
    """

    name = "pass"

    def forward(self, layer, a, z):
        if type(layer) is torch.nn.ReLU:
            return a > 0  # = z > 0, so the ReLU may stay in place
        if isinstance(layer, GATES):
            return gate_value(layer, a)
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
    supports: ClassVar[tuple[type[torch.nn.Module], ...]] = RELUS

    def check(self, module: torch.nn.Module) -> str | None:
        """``None`` when the rule is defined for ``module``, else why not (the engine's error quotes it)."""
        if isinstance(module, self.supports):
            return None
        kinds = ", ".join(t.__name__ for t in self.supports)
        return f"the rule {self.name!r} is defined for {kinds} (or a subclass) only"

    @staticmethod
    def active(module: torch.nn.Module, a: Tensor, z: Tensor) -> Tensor:
        """The activation's gate ``s(x)`` in ``f(x) = x s(x)``: a boolean mask for ReLU-like layers
        (``x > 0``; ``lo < x < hi`` for Hardtanh/ReLU6), the float gate value for :data:`GATES`."""
        if isinstance(module, GATES):
            return gate_value(module, a)
        lo = getattr(module, "min_val", 0.0)
        hi = getattr(module, "max_val", None)
        mask = a > lo
        if hi is not None:
            mask &= a < hi
        return mask


def guided_relu_grad(g: Tensor, mask: Tensor) -> Tensor:
    """``where(mask, max(g, 0), 0)`` (GBP's step at a ReLU); ``mask`` is boolean. Written as a
    product with the mask viewed as bytes: much faster than ``torch.where`` on the CPU."""
    return g.clamp(min=0).mul_(mask.view(torch.uint8))


class GuidedReLU(ActivationRule):
    """Guided backpropagation (Springenberg et al. 2015): ``R_in = 1[z > 0] * max(R_out, 0)`` at a
    ReLU (``1[0 < z < 6]`` at a ReLU6/Hardtanh).

    At a gate ``f(z) = z s(z)`` (GELU, SiLU, Hardswish, Mish) the ReLU's mask ``1[z > 0] = s(z)`` is
    replaced by the gate: ``R_in = s(z) * max(R_out, 0)``; for a ReLU this is the rule above.
    Kernel slot ``guided_relu_grad`` (the mask step on boolean masks).
    """

    name = "gbp_relu"
    supports = (*RELUS, *GATES)
    kernel_slots = ("guided_relu_grad",)
    guided_relu_grad = staticmethod(guided_relu_grad)

    def forward(self, layer, a, z):
        return self.active(layer, a, z)

    def keeps_inplace(self, module: torch.nn.Module) -> bool:
        return isinstance(module, RELUS)  # the mask is the same computed from the input or from the output

    def backward(self, layer, mask, g):
        if mask.dtype != torch.bool:
            return g.clamp(min=0) * mask
        return self.guided_relu_grad(g, mask)


class DeconvReLU(ActivationRule):
    """DeconvNet (Zeiler & Fergus 2014): ``R_in = max(R_out, 0)`` at a ReLU; the forward activation
    pattern is ignored (at a gate ``z s(z)`` too: the gate is the forward pattern)."""

    name = "deconvnet_relu"
    supports = (*RELUS, *GATES)

    def backward(self, layer, state, g):
        return g.clamp(min=0)

    def keeps_inplace(self, module: torch.nn.Module) -> bool:
        return True  # needs nothing from the forward pass


class RectifiedReLU(ActivationRule):
    """Rectified gradient (Kim et al. 2019): ``R_in = 1[a * R_out > tau] * R_out`` at a ReLU, ``tau``
    the ``q``-th percentile of ``a * R_out`` per sample (``a``: the ReLU's output, its activation).

    Kernel slot ``rectify`` (:func:`.selection.rectify`: the product, the per-sample selection and
    the mask).
    """

    name = "rectgrad_relu"
    kernel_slots = ("rectify",)
    rectify = staticmethod(rectify)

    def __init__(self, q: float = 98.0):
        if not 0 <= q <= 100:
            raise ValueError(f"q is a percentile and must lie in [0, 100], got {q}")
        self.q = float(q)

    def forward(self, layer, a, z):
        return z, z._version  # the activation (the output, also when the layer runs in place)

    def backward(self, layer, state, g):
        act, version = state
        if act._version != version:
            raise RuntimeError(
                f"rectgrad: the output of {type(layer).__name__} was modified in place after the forward pass; "
                "make the operation after it out of place"
            )
        return self.rectify(act, g, self.q)

    def keeps_inplace(self, module: torch.nn.Module) -> bool:
        return True


#: every rule the toolkit ships, by name (a third-party plugin may add rules through its method
#: classes' ``rules``; :func:`.composites.registered_rules` rejects a name registered twice)
BUILTIN_RULES: dict[str, type[Rule]] = {
    "gradient": Gradient, "pass": Pass, "lrp_0": LRP0, "lrp_epsilon": Epsilon, "lrp_gamma": Gamma,
    "zplus": ZPlus, "lrp_zplus": ZPlus, "lrp_alpha_beta": AlphaBeta, "lrp_flat": Flat, "lrp_wsquare": WSquare,
    "zbox": ZBox, "lrp_zbox": ZBox,
    "gbp_relu": GuidedReLU, "deconvnet_relu": DeconvReLU, "rectgrad_relu": RectifiedReLU,
}
