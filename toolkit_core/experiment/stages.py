"""The stages of the default experiment, in run order: one module each. Each stage takes the
:class:`~toolkit_core.experiment.runner.RunContext` and returns plain data.

* ``train`` (:mod:`.train`): a small digits CNN trained plainly and with every configured defense;
* ``robustness`` (:mod:`.robustness`): clean / per-attack / worst-case accuracy of every trained model;
* ``attribution`` (:mod:`.attribution`): heatmaps of every attribution method (digits and photos),
  cascading parameter randomization, input alignment, key-information sufficiency;
* ``generative`` (:mod:`.generative`): GAN vs GAN-with-prior on the PacGAN ring and grid;
* ``metrics`` (:mod:`.metrics`): every generalization metric on every trained model;
* ``generalization`` (:mod:`.gap_study`): Jiang et al.'s study: does each metric predict the gap of
  MLPs trained to the same training loss?
* ``datasets`` (:mod:`.data_sources`): a model trained on every data set plugin, with its declared budget;
* ``detectors`` (:mod:`.detectors`): every detector's AUROC against noise, flipped and adversarial inputs;
* ``patches`` (:mod:`.patches`): every weight patch from the defended models, accuracy vs coefficient.

Their figures are drawn by :mod:`.figures`; what they share (data, a fresh model, accuracy) is in :mod:`.common`.
"""

from __future__ import annotations

from collections.abc import Callable

from .attribution import stage_attribution
from .data_sources import stage_datasets
from .detectors import stage_detectors
from .gap_study import stage_generalization
from .generative import stage_generative
from .metrics import stage_metrics
from .patches import stage_patches
from .robustness import stage_robustness
from .runner import RunContext
from .train import stage_train

#: stage name -> function, in the order the stages run.
STAGE_FUNCTIONS: dict[str, Callable[[RunContext], dict]] = {
    "train": stage_train, "robustness": stage_robustness, "attribution": stage_attribution,
    "generative": stage_generative, "metrics": stage_metrics, "generalization": stage_generalization,
    "datasets": stage_datasets, "detectors": stage_detectors, "patches": stage_patches,
}
