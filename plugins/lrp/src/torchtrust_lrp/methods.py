"""LRP's composites and the ``lrp`` method; its rules are the core's (:mod:`toolkit_core.attribution.rules`),
which this plugin hands its fused division kernel."""

from __future__ import annotations

from typing import Any

from toolkit_core.attribution import rules as core
from toolkit_core.attribution.base import RelevanceMethod
from toolkit_core.methods import Scale

from .kernels import stabilized_divide

#: composites are plain data: keys are layer names, positions, classes or groups (see composites.py)
COMPOSITES: dict[str, dict] = {
    # flat on the first layer, z+ on conv, epsilon on dense (Kohlbrenner et al. 2020)
    "epsilon_plus_flat": {"first": "lrp_flat", "conv": "lrp_zplus", "linear": "lrp_epsilon"},
    # zB on the first conv, gamma on the other convs, epsilon on dense (Montavon et al. 2019)
    "epsilon_gamma_box": {"first_conv": "lrp_zbox", "conv": "lrp_gamma", "linear": "lrp_epsilon"},
    # alpha-beta (2, 1) on conv, epsilon on dense
    "epsilon_alpha2_beta1": {"conv": ("lrp_alpha_beta", {"alpha": 2.0, "beta": 1.0}), "linear": "lrp_epsilon"},
}

#: the core's rules ``rule=`` may name (every rule but the activation rules of GBP, deconvnet, RectGrad)
LAYER_RULES = sorted(n for n, c in core.BUILTIN_RULES.items() if not issubclass(c, core.ActivationRule))

#: what every LRP composite falls back to for layers it does not mention
DEFAULTS: dict[str, Any] = dict(RelevanceMethod.base_composite)


class LRP(RelevanceMethod):
    """Layer-wise relevance propagation (Bach et al. 2015) with per-layer rules.

    ``R_j = sum_k a_j w_jk / (z_k + eps sign z_k) R_k`` (epsilon) and its variants (gamma,
    alpha-beta, flat, w^2, z+, zB), starting from ``R = onehot(target) * logits``. ``composite``: a
    registered composite name (``epsilon_plus_flat``, ``epsilon_gamma_box``, ``epsilon_alpha2_beta1``)
    or a dict (see :mod:`toolkit_core.attribution.composites`); without one, ``rule`` applies to every
    conv and dense layer. BatchNorm layers after a conv are folded into it; activations pass
    relevance (gates such as GELU/SiLU and squeeze-excitation scales are held constant); residual
    additions split it in proportion to the summands; LayerNorm holds its standard deviation constant
    and attention its weights (Ali et al. 2022). ``use_bias=False`` leaves the (modified) bias out of
    the denominators of epsilon, gamma, z+ and alpha-beta (default: in, as in Montavon et al. 2019
    and Zennit). ``low``/``high``: zB bounds (else ``model.input_range``; never the batch). ``low_memory=True``
    recomputes, in the backward pass, the output of every layer whose input is smaller than its
    output, instead of keeping its rule state (less memory, one extra forward of those layers).
    """

    name = "lrp"
    summary = "Layer-wise relevance propagation with per-layer rules and composites (epsilon, gamma, z+...)."
    citation = "doi:10.1371/journal.pone.0130140"
    kernels = ("torchtrust_lrp::stabilized_divide",)
    composites = COMPOSITES
    #: every rule with a ``divide`` slot (epsilon, gamma, z+, alpha-beta, flat, w^2, zB) uses the fused kernel
    rule_kernels = {"divide": stabilized_divide}

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """The default rule is epsilon everywhere (close to input x gradient); a composite and z+ are
        shown beside it."""
        return [{}, {"composite": "epsilon_plus_flat"}, {"rule": "lrp_zplus"}]

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """The modified-backprop seed's claims against the plain gradient (see ``modified_bp_claims``)."""
        from toolkit_core.experiment.anchors import modified_bp_claims

        return modified_bp_claims(stage, result, labels, reference="gradient",
                                  vgg_labels=[lbl for lbl in labels if "zplus" in lbl or "z+" in lbl])

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
        use_bias: bool = True,
    ):
        if isinstance(composite, str) and composite not in COMPOSITES:
            from toolkit_core.attribution.composites import registered_composites

            if composite not in registered_composites():
                raise ValueError(
                    f"lrp: unknown composite {composite!r}; choose one of {', '.join(sorted(COMPOSITES))} "
                    "or pass a dict mapping layers to rules"
                )
        if rule not in LAYER_RULES:
            raise ValueError(f"lrp: unknown rule {rule!r}; choose one of {', '.join(sorted(LAYER_RULES))}")
        if epsilon < 0:
            raise ValueError(f"lrp: epsilon must be >= 0, got {epsilon}")
        self.composite_spec, self.rule = composite, rule
        self.epsilon, self.gamma, self.alpha, self.beta, self.low, self.high = epsilon, gamma, alpha, beta, low, high
        self.low_memory, self.use_bias = low_memory, use_bias

    def composite(self):
        spec = self.composite_spec
        if spec is None:
            return {"conv": self.rule, "linear": self.rule}
        if isinstance(spec, str):
            if spec in COMPOSITES:
                return COMPOSITES[spec]
            from toolkit_core.attribution.composites import get_composite

            return get_composite(spec)
        return spec

    def rule_params(self):
        return {"epsilon": self.epsilon, "gamma": self.gamma, "alpha": self.alpha, "beta": self.beta,
                "low": self.low, "high": self.high, "use_bias": self.use_bias}
