"""torchtrust plugin: Robust Weight Signatures ("Robust Weight Signatures: Gaining Robustness as Easy as
Patching Weights?", Cai, Zhang, Wang, ICML 2023, arXiv:2302.12480).

* ``rws`` (patch): the difference between a robust and a standard model's shallow-layer weights,
  added with a coefficient to a copy of another standard model.
"""

from toolkit_core import hookimpl

from .signature import RobustWeightSignature, coefficient_sweep, layer_differences, shallow_layers

__all__ = ["RobustWeightSignature", "coefficient_sweep", "layer_differences", "shallow_layers"]


@hookimpl
def torchtrust_register_patches(register):
    register(RobustWeightSignature)
