"""The stages of the default experiment, in run order: one module each. Each stage takes the
:class:`~toolkit_core.experiment.runner.RunContext` and returns plain data.

* ``train`` (:mod:`.train`): a small digits CNN trained plainly and with every configured defense;
* ``robustness`` (:mod:`.robustness`): clean / per-attack / worst-case accuracy of every trained model;
* ``attribution`` (:mod:`.attribution`): heatmaps of every attribution method (digits and photos),
  cascading parameter randomization, input alignment, key-information sufficiency;
* ``generative`` (:mod:`.generative`): GAN vs GAN-with-prior on the PacGAN ring and grid;
* ``metrics`` (:mod:`.metrics`): every generalization metric on every trained model.

Their figures are drawn by :mod:`.figures`; what they share (data, a fresh model, accuracy) is in :mod:`.common`.
"""

from __future__ import annotations

from collections.abc import Callable

from .attribution import stage_attribution
from .generative import stage_generative
from .metrics import stage_metrics
from .robustness import stage_robustness
from .runner import RunContext
from .train import stage_train

#: stage name -> function, in the order the stages run.
STAGE_FUNCTIONS: dict[str, Callable[[RunContext], dict]] = {
    "train": stage_train, "robustness": stage_robustness, "attribution": stage_attribution,
    "generative": stage_generative, "metrics": stage_metrics,
}
