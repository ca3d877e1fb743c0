"""torchtrust plugin: neural collapse NC1-NC4 (Papyan, Han & Donoho 2020, arXiv:2008.08186).

* ``neural_collapse`` (metric): NC1 (within-class variability relative to between-class spread),
  NC2 (equinorm / equiangular class means), NC3 (classifier-mean self-duality), NC4 (agreement with
  the nearest-class-centre rule). Class statistics come from the fused scatter kernel
  ``torchtrust_features::class_scatter`` in :mod:`toolkit_core.features`.
"""

from toolkit_core import hookimpl

from .methods import NeuralCollapse

__all__ = ["NeuralCollapse"]


@hookimpl
def torchtrust_register_metrics(register):
    register(NeuralCollapse)
