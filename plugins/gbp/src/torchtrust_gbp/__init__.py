"""torchtrust plugin: guided backpropagation (Springenberg et al. 2015, arXiv:1412.6806).

At every ReLU the backward signal is ``R_in = 1[z > 0] * max(R_out, 0)`` (the core rule
``gbp_relu``); linear layers use the plain gradient. The mask step runs through this plugin's kernel
``torchtrust_gbp::guided_relu_grad``.
"""

from toolkit_core import hookimpl
from toolkit_core.attribution.rules import GuidedReLU

from .methods import GuidedBackprop

__all__ = ["GuidedBackprop", "GuidedReLU"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(GuidedBackprop)
