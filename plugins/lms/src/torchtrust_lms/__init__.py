"""torchtrust plugin: LMS-k, the linear + k-slab data of "The Pitfalls of Simplicity Bias in Neural Networks".

* ``lms`` (dataset): one linearly separable coordinate and ``dim - 1`` k-slab coordinates;
  :func:`randomization_test` measures which coordinates a trained model relies on.
"""

from toolkit_core import hookimpl

from .data import lms, random_rotation, randomization_test, randomize, slab_classes, slab_edges
from .source import LMS

__all__ = ["LMS", "lms", "random_rotation", "randomization_test", "randomize", "slab_classes", "slab_edges"]


@hookimpl
def torchtrust_register_datasets(register):
    register(LMS)
