"""torchtrust plugin: path-norm (arXiv:1503.00036, measured as in Jiang et al. 2019, arXiv:1912.02178).

* ``path_norm`` (metric): the network with squared parameters applied to an all-ones input, summed.
"""

from toolkit_core import hookimpl

from .methods import PathNorm, path_norm

__all__ = ["PathNorm", "path_norm"]


@hookimpl
def torchtrust_register_metrics(register):
    register(PathNorm)
