"""torchtrust plugin: Integrated Gradients (Sundararajan, Taly & Yan 2017, arXiv:1703.01365).

``integrated_gradients``: the path integral of the gradient along the straight line from a
baseline to the input, by a Riemann sum or Gauss-Legendre quadrature, batched over the path with a
cap on the rows per forward pass; the completeness error is reported with every call.
"""

from toolkit_core import hookimpl

from .methods import RULES, IGResult, IntegratedGradients, integrated_gradients, quadrature

__all__ = ["RULES", "IGResult", "IntegratedGradients", "integrated_gradients", "quadrature"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(IntegratedGradients)
