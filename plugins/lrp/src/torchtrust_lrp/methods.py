"""LRP rules (kernel-backed versions of the core rules), composites and the ``lrp`` method."""

from __future__ import annotations

from typing import Any

from toolkit_core.attribution import rules as core
from toolkit_core.attribution.base import ModifiedBackprop

from .kernels import multiply, stabilized_divide


def _kernel_backed(cls: type[core.Rule], name: str) -> type[core.Rule]:
    """The core rule ``cls`` under the name ``name``, dividing and multiplying with this plugin's kernels."""
    return type(cls.__name__, (cls,), {
        "name": name, "divide": staticmethod(stabilized_divide), "multiply": staticmethod(multiply),
        "__doc__": cls.__doc__, "__module__": __name__,
    })


LRP0 = _kernel_backed(core.LRP0, "lrp_0")
Epsilon = _kernel_backed(core.Epsilon, "lrp_epsilon")
Gamma = _kernel_backed(core.Gamma, "lrp_gamma")
AlphaBeta = _kernel_backed(core.AlphaBeta, "lrp_alpha_beta")
Flat = _kernel_backed(core.Flat, "lrp_flat")
WSquare = _kernel_backed(core.WSquare, "lrp_wsquare")
ZPlus = _kernel_backed(core.ZPlus, "lrp_zplus")
ZBox = _kernel_backed(core.ZBox, "lrp_zbox")

RULES: dict[str, type[core.Rule]] = {
    r.name: r for r in (LRP0, Epsilon, Gamma, AlphaBeta, Flat, WSquare, ZPlus, ZBox)
}

#: composites are plain data: keys are layer names, positions, classes or groups (see composites.py)
COMPOSITES: dict[str, dict] = {
    # flat on the first layer, z+ on conv, epsilon on dense (Kohlbrenner et al. 2020)
    "epsilon_plus_flat": {"first": "lrp_flat", "conv": "lrp_zplus", "linear": "lrp_epsilon"},
    # zB on the first conv, gamma on the other convs, epsilon on dense (Montavon et al. 2019)
    "epsilon_gamma_box": {"first_conv": "lrp_zbox", "conv": "lrp_gamma", "linear": "lrp_epsilon"},
    # alpha-beta (2, 1) on conv, epsilon on dense
    "epsilon_alpha2_beta1": {"conv": ("lrp_alpha_beta", {"alpha": 2.0, "beta": 1.0}), "linear": "lrp_epsilon"},
}

#: what every LRP composite falls back to for layers it does not mention
DEFAULTS: dict[str, Any] = {"bn": "lrp_epsilon", "activation": "pass"}


class LRP(ModifiedBackprop):
    """Layer-wise relevance propagation (Bach et al. 2015) with per-layer rules.

    ``R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k`` (epsilon) and its variants (gamma,
    alpha-beta, flat, w^2, z+, zB), starting from ``R = onehot(target) * logits``. ``composite``: a
    registered composite name (``epsilon_plus_flat``, ``epsilon_gamma_box``, ``epsilon_alpha2_beta1``)
    or a dict (see :mod:`toolkit_core.attribution.composites`); without one, ``rule`` applies to every
    conv and dense layer. BatchNorm layers after a conv are folded into it; activations pass
    relevance; residual additions split it in proportion to the summands. ``low_memory=True``
    recomputes, in the backward pass, the output of every layer whose input is smaller than its
    output, instead of keeping its rule state (less memory, one extra forward of those layers).
    """

    name = "lrp"
    summary = "Layer-wise relevance propagation with per-layer rules and composites (epsilon, gamma, z+...)."
    citation = "doi:10.1371/journal.pone.0130140"
    kernels = ("torchtrust_lrp::stabilized_divide", "torchtrust_lrp::multiply")
    multiply_input = True
    rules = RULES
    composites = COMPOSITES

    def __init__(
        self,
        composite: str | dict | None = None,
        rule: str = "lrp_epsilon",
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        alpha: float = 2.0,
        beta: float = 1.0,
        low: float | None = None,
        high: float | None = None,
        low_memory: bool = False,
    ):
        if isinstance(composite, str) and composite not in COMPOSITES:
            from toolkit_core.attribution.composites import registered_composites

            if composite not in registered_composites():
                raise ValueError(
                    f"lrp: unknown composite {composite!r}; choose one of {', '.join(sorted(COMPOSITES))} "
                    "or pass a dict mapping layers to rules"
                )
        if rule not in RULES and rule not in core.BUILTIN_RULES:
            raise ValueError(f"lrp: unknown rule {rule!r}; choose one of {', '.join(sorted(RULES))}")
        if epsilon < 0:
            raise ValueError(f"lrp: epsilon must be >= 0, got {epsilon}")
        self.composite_spec, self.rule = composite, rule
        self.epsilon, self.gamma, self.alpha, self.beta, self.low, self.high = epsilon, gamma, alpha, beta, low, high
        self.low_memory = low_memory

    def composite(self):
        spec = self.composite_spec
        if spec is None:
            spec = {"conv": self.rule, "linear": self.rule}
        elif isinstance(spec, str):
            if spec in COMPOSITES:
                spec = COMPOSITES[spec]
            else:
                from toolkit_core.attribution.composites import get_composite

                spec = get_composite(spec)
        return {**DEFAULTS, **spec}

    def rule_params(self):
        return {"epsilon": self.epsilon, "gamma": self.gamma, "alpha": self.alpha, "beta": self.beta,
                "low": self.low, "high": self.high}
