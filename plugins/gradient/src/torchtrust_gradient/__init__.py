"""torchtrust plugin: the plain gradient and input x gradient attributions.

* ``gradient``: ``R = d logit_target / d x`` (Simonyan et al. 2014, arXiv:1312.6034).
* ``input_x_gradient``: ``R = x * d logit_target / d x`` (Shrikumar et al. 2016, arXiv:1605.01713);
  the elementwise product runs through the kernel ``torchtrust_gradient::input_x_gradient``.
"""

from toolkit_core import hookimpl

from .methods import Gradient, InputXGradient

__all__ = ["Gradient", "InputXGradient"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(Gradient)
    register(InputXGradient)
