"""torchtrust plugin: SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825).

``smoothgrad``: the average of an attribution method's maps over Gaussian-noised copies of the
input -- of the plain gradient by default, or of any registered attribution method by name
(``base="gbp"`` is SmoothGrad of guided backprop) -- batched over the noise samples with a cap on
the rows per pass.
"""

from toolkit_core import hookimpl

from .methods import SmoothGrad, smooth

__all__ = ["SmoothGrad", "smooth"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(SmoothGrad)
