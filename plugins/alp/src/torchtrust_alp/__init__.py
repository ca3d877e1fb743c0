"""torchtrust plugin: adversarial logit pairing (Kannan, Kurakin & Goodfellow 2018, arXiv:1803.06373).

* ``alp``: ``L = CE on the 50/50 clean + adversarial batch + lambda * mean_i ||z(x_i) - z(x_adv_i)||^2``
  on the logits ``z``. The pairing term runs through the kernel ``torchtrust_alp::weighted_pair_loss``
  (``sum_i w_i ||z_i - z'_i||^2 / B``; PyTorch reference on CPU, fused Triton kernel on CUDA, with an
  autograd formula), which the ``aalp`` plugin reuses with adaptive per-sample weights.
"""

from toolkit_core import hookimpl

from .kernels import weighted_pair_loss
from .methods import ALP

__all__ = ["ALP", "weighted_pair_loss"]


@hookimpl
def torchtrust_register_defenses(register):
    register(ALP)
