"""Attribution analysis: the seed paper's behaviours made measurable (docs/specs.md section 1, "Analysis").

* :func:`cascading_randomization` -- model-parameter randomization test (Adebayo et al. 2018).
* :func:`cosine_similarity_convergence` -- rank-one collapse of a rule (Sixt et al. 2020).
* :func:`input_alignment` -- cosine between attribution and input (per sample and layer-wise).
* :func:`key_information_sufficiency` -- does the top-k% of the attribution keep the prediction?
* :mod:`.faithfulness` -- pixel flipping, region perturbation, insertion/deletion AUC, ROAD,
  max-sensitivity, sparseness; :func:`evaluate_faithfulness` ranks methods with error bars.
* :mod:`.similarity` -- SSIM, sign-flip SSIM, Spearman, HOG-Spearman between maps.
* :mod:`.plots` -- figures (matplotlib, Agg backend, PNG).

Every function works on any registered attribution method (or method object), and hands the caller's
model back unchanged (randomization runs on a deep copy).
"""

from __future__ import annotations

from .alignment import AlignmentResult, input_alignment
from .convergence import ConvergenceResult, cosine_similarity_convergence
from .faithfulness import (
    FaithfulnessReport,
    evaluate_faithfulness,
    insertion_deletion,
    max_sensitivity,
    pixel_flipping,
    region_perturbation,
    road,
    sparseness,
)
from .randomization import RandomizationResult, cascading_randomization
from .similarity import compare_maps, hog_spearman, spearman, ssim, ssim_sign_flip
from .sufficiency import SufficiencyResult, key_information_sufficiency

__all__ = [
    "AlignmentResult",
    "ConvergenceResult",
    "FaithfulnessReport",
    "RandomizationResult",
    "SufficiencyResult",
    "cascading_randomization",
    "compare_maps",
    "cosine_similarity_convergence",
    "evaluate_faithfulness",
    "hog_spearman",
    "input_alignment",
    "insertion_deletion",
    "key_information_sufficiency",
    "max_sensitivity",
    "pixel_flipping",
    "region_perturbation",
    "road",
    "sparseness",
    "spearman",
    "ssim",
    "ssim_sign_flip",
]
