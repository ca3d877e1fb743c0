"""torchtrust plugin: Rectified Gradient (Kim et al. 2019, arXiv:1902.04893).

At every ReLU ``R_in = 1[a * R_out > tau] * R_out`` with ``tau`` the q-th percentile of ``a * R_out``
per sample (default q = 98; the core rule ``rectgrad_relu``); linear layers use the plain gradient;
the final map is multiplied by the input (as the authors' reference code does). Kernel:
``torchtrust_rectgrad::rectify``.
"""

from toolkit_core import hookimpl
from toolkit_core.attribution.rules import RectifiedReLU

from .methods import RectGrad

__all__ = ["RectGrad", "RectifiedReLU"]


@hookimpl
def torchtrust_register_attribution_rules(register):
    register(RectGrad)
