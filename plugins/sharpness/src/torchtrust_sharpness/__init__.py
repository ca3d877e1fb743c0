"""torchtrust plugin: magnitude-aware PAC-Bayes sharpness (Jiang et al. 2019, arXiv:1912.02178).

* ``sharpness`` (metric): bisection for the largest magnitude-aware weight-noise level that keeps
  the expected training error within a target; reports it, 1/sigma^2 and the PAC-Bayes term.
* :func:`sharpness_curve`: the expected deviation at given noise levels (seeded, antithetic draws).
"""

from toolkit_core import hookimpl

from .methods import Sharpness, sharpness_curve

__all__ = ["Sharpness", "sharpness_curve"]


@hookimpl
def torchtrust_register_metrics(register):
    register(Sharpness)
