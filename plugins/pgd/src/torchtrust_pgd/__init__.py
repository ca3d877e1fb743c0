"""torchtrust plugin: projected gradient descent (Madry et al. 2018, arXiv:1706.06083).

* ``pgd``: random start in the eps-ball, ``steps`` iterations of
  ``x <- Proj_{B(x0, eps) and [0,1]}(x + alpha * sign(grad_x CE))`` (L-inf) or of the normalized-gradient
  step ``x + alpha * g / ||g||_2`` with projection onto the L2 ball (L2); ``restarts`` keep the
  per-sample worst case. The step runs through the kernels ``torchtrust_pgd::linf_step`` and
  ``torchtrust_pgd::l2_step`` (PyTorch reference on CPU, fused Triton kernel on CUDA).
"""

from toolkit_core import hookimpl

from .methods import PGD

__all__ = ["PGD"]


@hookimpl
def torchtrust_register_attacks(register):
    register(PGD)
