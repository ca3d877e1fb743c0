"""torchtrust plugin: calibration of a classifier's predicted probabilities.

* ``calibration`` (metric): expected calibration error with equal-width and equal-mass bins, maximum
  calibration error, Brier score and negative log-likelihood; :func:`reliability_diagram` draws the
  figure ("Deep Probability Estimation", Liu et al., ICML 2022).
"""

from toolkit_core import hookimpl

from .methods import Calibration, calibration_errors, reliability_bins, reliability_diagram

__all__ = ["Calibration", "calibration_errors", "reliability_bins", "reliability_diagram"]


@hookimpl
def torchtrust_register_metrics(register):
    register(Calibration)
