"""torchtrust plugin: the Minimum Manifold Coding prior (``mmc``) for MMCGAN.

* ``mmc``: codes of the training points along an approximately shortest open Hamiltonian path
  (operational definition of Zheng, Sang & Xu, MMCGAN); the path solver is
  :mod:`torchtrust_mmc.tsp` and its neighbour search the kernel ``torchtrust_mmc::knn``.
"""

from toolkit_core import hookimpl

from .methods import MMC

__all__ = ["MMC"]


@hookimpl
def torchtrust_register_priors(register):
    register(MMC)
