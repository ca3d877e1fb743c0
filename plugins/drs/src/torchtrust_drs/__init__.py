"""torchtrust plugin: Dual Randomized Smoothing (Xia, Yu, Jiang & Ding, ICLR 2024, arXiv:2404.09586).

* ``drs``: our operational reading of the abstract: the image is down-sampled into two complementary
  sub-images (a checkerboard split, ``m + n = d``), each smoothed with Gaussian noise in its own
  lower dimension, and the two smoothed votes are averaged; certified L2 radius
  ``sigma (Phi^-1(p1) + Phi^-1(p2)) / sqrt(2)``.
"""

from toolkit_core import hookimpl

from .methods import DualRandomizedSmoothing, drs_radius, merge, split

__all__ = ["DualRandomizedSmoothing", "drs_radius", "merge", "split"]


@hookimpl
def torchtrust_register_certifiers(register):
    register(DualRandomizedSmoothing)
