"""torchtrust plugin: product of spectral norms (arXiv:1706.08498, measured as in arXiv:1912.02178).

* ``spectral_product`` (metric): log product of squared spectral and Frobenius norms of the layers.
"""

from toolkit_core import hookimpl

from .methods import SpectralProduct

__all__ = ["SpectralProduct"]


@hookimpl
def torchtrust_register_metrics(register):
    register(SpectralProduct)
