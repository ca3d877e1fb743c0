"""torchtrust plugin: Eigen-CAM (Muhammad & Yeasin 2020, arXiv:2008.00299).

The projection of one layer's feature maps on their first principal component: class-agnostic,
no gradients, one batched SVD (or power iteration) for the whole batch.
"""

from toolkit_core import hookimpl

from .methods import EigenCAM, first_component_projection

__all__ = ["EigenCAM", "first_component_projection"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(EigenCAM)
