"""torchtrust plugin: AccelAT ("AccelAT: A Framework for Accelerating the Adversarial Training of Deep Neural
Networks through Accuracy Gradient", Nikfam, Marchisio, Martina, Shafique, 2022, arXiv:2210.06888).

* ``accelat`` (defense): PGD adversarial training whose learning rate is multiplied by ``factor`` after
  every epoch in which the monitored (validation) accuracy rose by less than ``threshold``.
"""

from toolkit_core import hookimpl

from .defense import AccelAT, next_learning_rate

__all__ = ["AccelAT", "next_learning_rate"]


@hookimpl
def torchtrust_register_defenses(register):
    register(AccelAT)
