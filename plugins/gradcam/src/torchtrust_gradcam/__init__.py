"""torchtrust plugin: gradient-weighted class activation maps.

* ``gradcam``: Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391).
* ``gradcam_pp``: Grad-CAM++ (Chattopadhyay et al. 2018, arXiv:1710.11063).

Both read one layer's feature maps (by name, or automatically the last spatial feature map in
execution order) through :mod:`toolkit_core.feature_maps` and upsample the map to the input size.
"""

from toolkit_core import hookimpl

from .methods import GradCAM, GradCAMPlusPlus, cam_weights

__all__ = ["GradCAM", "GradCAMPlusPlus", "cam_weights"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(GradCAM)
    register(GradCAMPlusPlus)
