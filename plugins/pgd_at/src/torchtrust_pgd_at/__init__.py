"""torchtrust plugin: PGD adversarial training (Madry et al. 2018, arXiv:1706.06083).

* ``pgd_at``: ``L = 1/B sum_i CE(f(x_adv_i), y_i)`` with ``x_adv = attack(model, x, y)`` crafted with the
  model in eval mode (the attack is passed in, e.g. L-inf PGD-10, eps 8/255, step 2/255).
"""

from toolkit_core import hookimpl

from .methods import PGDAT

__all__ = ["PGDAT"]


@hookimpl
def torchtrust_register_defenses(register):
    register(PGDAT)
