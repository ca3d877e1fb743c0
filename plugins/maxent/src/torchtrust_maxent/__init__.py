"""torchtrust plugin: feature conditions of the maximum-entropy view (arXiv:1711.07758).

* ``maxent`` (metric): sufficiency gap of the penultimate features against a freshly fitted linear
  softmax probe, and their redundancy as Gaussian total correlation, globally and within classes.
"""

from toolkit_core import hookimpl

from .methods import MaxEnt

__all__ = ["MaxEnt"]


@hookimpl
def torchtrust_register_metrics(register):
    register(MaxEnt)
