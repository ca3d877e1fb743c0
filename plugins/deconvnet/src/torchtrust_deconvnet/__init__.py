"""torchtrust plugin: DeconvNet attributions (Zeiler & Fergus 2014, arXiv:1311.2901).

At every ReLU the backward signal is ``R_in = max(R_out, 0)`` -- the forward mask is ignored (the
core rule ``deconvnet_relu``); linear layers use the plain gradient.
"""

from toolkit_core import hookimpl
from toolkit_core.attribution.rules import DeconvReLU

from .methods import DeconvNet

__all__ = ["DeconvNet", "DeconvReLU"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(DeconvNet)
