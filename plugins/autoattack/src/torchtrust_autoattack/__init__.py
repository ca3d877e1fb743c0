"""torchtrust plugin: AutoAttack (Croce & Hein, ICML 2020, arXiv:2003.01690), composed from the catalog.

* ``autoattack``: runs registered attacks by name one after another, each only on the points every
  earlier attack left correctly classified; versions ``standard`` (APGD-CE, APGD-T, FAB-T, Square)
  and ``plus``, L-inf and L2; a custom list (third-party attacks included) by name.
"""

from toolkit_core import hookimpl

from .methods import VERSIONS, AutoAttack, AutoAttackResult, PassCounter

__all__ = ["VERSIONS", "AutoAttack", "AutoAttackResult", "PassCounter"]


@hookimpl
def torchtrust_register_attacks(register):
    register(AutoAttack)
