"""torchtrust plugin: FAB, the fast adaptive boundary attack (Croce & Hein, ICML 2020, arXiv:1907.02044).

* ``fab``: minimum-norm attack by iterated projections onto the linearized decision boundary, with
  an extrapolation towards the original point and a backward step after each success; targeted
  (FAB-T, AutoAttack's version: one run per target class) or untargeted; L-inf and L2.
"""

from toolkit_core import hookimpl

from .methods import FAB

__all__ = ["FAB"]


@hookimpl
def torchtrust_register_attacks(register):
    register(FAB)
