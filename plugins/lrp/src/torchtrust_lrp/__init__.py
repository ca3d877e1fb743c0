"""torchtrust plugin: layer-wise relevance propagation (Bach et al. 2015, doi:10.1371/journal.pone.0130140).

Method ``lrp`` (``composite=`` a name or a dict, or one ``rule=`` for every conv/dense layer).
Rules (the core's, :mod:`toolkit_core.attribution.rules`): ``lrp_0``, ``lrp_epsilon``, ``lrp_gamma``,
``lrp_alpha_beta``, ``lrp_flat``, ``lrp_wsquare`` (plus ``lrp_zplus`` and ``lrp_zbox`` used by the
composites). Composites: ``epsilon_plus_flat``,
``epsilon_gamma_box``, ``epsilon_alpha2_beta1``. Look them up with
``toolkit_core.attribution.get_rule`` / ``get_composite``. Kernel: the fused stabilized divide
``torchtrust_lrp::stabilized_divide``.
"""

from toolkit_core import hookimpl

from .methods import COMPOSITES, LRP

__all__ = ["LRP", "COMPOSITES"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(LRP)
