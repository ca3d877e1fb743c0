"""torchtrust plugin: auto-PGD (Croce & Hein 2020, arXiv:2003.01690).

* ``apgd``: APGD-CE (default) or APGD-DLR, L-inf or L2: PGD with momentum 0.75 and the step-size
  schedule of the paper (halve the step at checkpoints where the loss stopped increasing, restart from
  the best point), keeping per sample the strongest point seen.
* ``apgd_t``: APGD-T, the targeted DLR loss run once per target class (the top-9 other classes in
  AutoAttack), only on the points not yet misclassified.
"""

from toolkit_core import hookimpl

from .methods import APGD, APGDT

__all__ = ["APGD", "APGDT"]


@hookimpl
def torchtrust_register_attacks(register):
    register(APGD)
    register(APGDT)
