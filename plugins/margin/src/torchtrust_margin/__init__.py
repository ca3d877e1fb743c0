"""torchtrust plugin: output-margin percentile (measured as in Jiang et al. 2019, arXiv:1912.02178).

* ``margin`` (metric): 10th percentile (and median, and per class) of the output margin.
"""

from toolkit_core import hookimpl

from .methods import Margin

__all__ = ["Margin"]


@hookimpl
def torchtrust_register_metrics(register):
    register(Margin)
