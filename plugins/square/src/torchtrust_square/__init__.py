"""torchtrust plugin: Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020, arXiv:1912.00049).

* ``square``: score-based black-box random search with square-shaped updates, L-inf and L2, under a
  query budget; it only calls the model's forward pass (no gradient is ever computed).
"""

from toolkit_core import hookimpl

from .methods import Square

__all__ = ["Square"]


@hookimpl
def torchtrust_register_attacks(register):
    register(Square)
