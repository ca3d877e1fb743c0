"""torchtrust plugin: adaptive smoothing (Bai, Anderson, Kim & Sojoudi, arXiv:2301.12554), our reading.

* ``MixedClassifier(standard, robust)``: ``p(x) = (1 - a(x)) softmax(g(x)) + a(x) softmax(h(x))`` with a
  small mixing network ``a(x) in (0, 1)``; the forward returns ``log p(x)``.
* ``adaptive_smoothing`` (defense): trains the mixing network as an adversarial-input detector and the
  mixture's accuracy on clean and adversarial inputs; the two base classifiers stay frozen.
"""

from toolkit_core import hookimpl

from .methods import AdaptiveSmoothing, MixedClassifier, MixingNetwork

__all__ = ["AdaptiveSmoothing", "MixedClassifier", "MixingNetwork"]


@hookimpl
def torchtrust_register_defenses(register):
    register(AdaptiveSmoothing)
