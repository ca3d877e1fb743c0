"""torchtrust plugin: TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan 2019, arXiv:1901.08573).

* ``trades``: ``L = CE(f(x), y) + beta * KL(p(x) || p(x'))`` with ``x'`` maximizing the KL term from the
  start ``x + 0.001 N(0, 1)`` (beta = 6), using the budget (eps, step, steps, norm) of the given attack.
"""

from toolkit_core import hookimpl

from .methods import TRADES, trades_kl

__all__ = ["TRADES", "trades_kl"]


@hookimpl
def torchtrust_register_defenses(register):
    register(TRADES)
