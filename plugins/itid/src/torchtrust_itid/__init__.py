"""torchtrust plugin: ITID hypothesis invariance (Zheng et al., arXiv:1911.12603).

* ``itid`` (metric): hard and soft (1 - total variation) invariance of the predictions under
  label-preserving transforms, per transform, per class and averaged, plus the ITID bound estimate.
* :mod:`torchtrust_itid.transforms`: the batched, seeded transforms (also used by ``itid_enhance``).
"""

from toolkit_core import hookimpl

from .methods import Itid

__all__ = ["Itid"]


@hookimpl
def torchtrust_register_metrics(register):
    register(Itid)
