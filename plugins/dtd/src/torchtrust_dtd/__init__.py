"""torchtrust plugin: deep Taylor decomposition (Montavon et al. 2017, arXiv:1512.02479).

Method ``dtd``: the z+ rule on hidden layers (``a >= 0``) and the zB rule on the first layer with
pixel bounds ``low <= x <= high`` (given, or the per-channel range of the batch).
"""

from toolkit_core import hookimpl

from .methods import DTD

__all__ = ["DTD"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(DTD)
