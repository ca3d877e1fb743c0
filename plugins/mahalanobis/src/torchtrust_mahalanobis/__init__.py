"""torchtrust plugin: the Mahalanobis detector ("A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", Lee, Lee, Lee, Shin, NeurIPS 2018).

* ``mahalanobis`` (detector): class-conditional Gaussians with a tied covariance on a model's features,
  input pre-processing, and a weighted ensemble over layers.
"""

from toolkit_core import hookimpl

from .detector import Mahalanobis

__all__ = ["Mahalanobis"]


@hookimpl
def torchtrust_register_detectors(register):
    register(Mahalanobis)
