"""torchtrust plugin: the PacGAN toy-protocol metrics of mode coverage (arXiv:1712.04086).

* ``modes_captured``: number of mixture modes with at least one high-quality sample;
* ``high_quality_fraction``: fraction of samples within 3 std of their nearest mode;
* ``reverse_kl``: KL(generated mode histogram || uniform).
"""

from toolkit_core import hookimpl

from .methods import HighQualityFraction, ModesCaptured, ReverseKL

__all__ = ["HighQualityFraction", "ModesCaptured", "ReverseKL"]


@hookimpl
def torchtrust_register_metrics(register):
    register(ModesCaptured)
    register(HighQualityFraction)
    register(ReverseKL)
