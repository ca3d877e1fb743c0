"""torchtrust plugin: randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918).

* ``randomized_smoothing``: the smoothed classifier ``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)``;
  ``predict`` (binomial test, abstain) and ``certify`` (Monte Carlo selection and estimation,
  Clopper-Pearson lower bound, certified L2 radius ``sigma * Phi^-1(pA)``).
"""

from toolkit_core import hookimpl

from .methods import MonteCarloCertifier, RandomizedSmoothing, clopper_pearson_lower, noise_counts

__all__ = ["MonteCarloCertifier", "RandomizedSmoothing", "clopper_pearson_lower", "noise_counts"]


@hookimpl
def torchtrust_register_certifiers(register):
    register(RandomizedSmoothing)
