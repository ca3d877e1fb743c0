"""torchtrust plugin: guided backpropagation (Springenberg et al. 2015, arXiv:1412.6806).

At every ReLU the backward signal is ``R_in = 1[z > 0] * max(R_out, 0)``; linear layers use the
plain gradient. The mask step runs through the kernel ``torchtrust_gbp::guided_relu_grad``.
"""

from toolkit_core import hookimpl

from .methods import GuidedBackprop, GuidedReLU

__all__ = ["GuidedBackprop", "GuidedReLU"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(GuidedBackprop)
