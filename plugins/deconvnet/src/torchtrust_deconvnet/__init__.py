"""torchtrust plugin: DeconvNet attributions (Zeiler & Fergus 2014, arXiv:1311.2901).

At every ReLU the backward signal is ``R_in = max(R_out, 0)`` -- the forward mask is ignored; linear
layers use the plain gradient. The step runs through the kernel ``torchtrust_deconvnet::relu_grad``.
"""

from toolkit_core import hookimpl

from .methods import DeconvNet, DeconvReLU

__all__ = ["DeconvNet", "DeconvReLU"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(DeconvNet)
