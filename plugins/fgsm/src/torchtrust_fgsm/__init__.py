"""torchtrust plugin: the fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, arXiv:1412.6572).

* ``fgsm``: ``x' = clip_[0,1](x + eps * sign(grad_x CE(f(x), y)))`` -- one forward, one backward.
"""

from toolkit_core import hookimpl

from .methods import FGSM

__all__ = ["FGSM"]


@hookimpl
def torchtrust_register_attacks(register):
    register(FGSM)
