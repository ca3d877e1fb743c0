"""torchtrust plugin: worst-of-k invariance enhancement (ITID, Zheng et al., arXiv:1911.12603).

* ``itid_enhance`` (defense / training objective): for each sample draw ``k`` random label-preserving
  transforms and train on the one whose output moves most (total variation) from the clean output.
  Use it with ``toolkit_core.fit(model, data, defense=create("itid_enhance"))``.
"""

from toolkit_core import hookimpl

from .methods import ItidEnhance

__all__ = ["ItidEnhance"]


@hookimpl
def torchtrust_register_defenses(register):
    register(ItidEnhance)
