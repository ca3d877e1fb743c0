"""torchtrust plugin: the standard Gaussian prior ``gaussian`` (z ~ N(0, I)), the GAN baseline."""

from toolkit_core import hookimpl

from .methods import Gaussian

__all__ = ["Gaussian"]


@hookimpl
def torchtrust_register_priors(register):
    register(Gaussian)
