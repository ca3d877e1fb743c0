"""torchtrust plugin: Adaptive Adversarial Logits Pairing (Wu, Sang, Xu, Zheng & Xu, arXiv:2005.11904).

Our operational reading (the paper's full text was not available): ALP plus

1. Guided Dropout on the penultimate features (the input of the final ``nn.Linear``): per sample,
   zero the fraction ``p`` of features with the lowest ``|c_j|``, ``c_j = h_j W[yhat, j]`` the
   contribution to the model's own predicted class on the clean input (detached; the adversarial twin
   shares the mask), and rescale the rest by ``1/(1-p)``; ``p`` ramps linearly from 0 to ``p_max``;
   training only. (Ranking by the true label leaks it into the training logits: ``rank_by="label"``.)
2. Adaptive pairing weights ``lambda_i = lambda * p(y_i | x_adv_i)`` from an eval-mode pass without
   dropout (detached, renormalized to mean ``lambda``).

* ``aalp``: ``L = 1/B sum_i [CE(x_i) + CE(x_adv_i)] / 2 + 1/B sum_i lambda_i ||z(x_i) - z(x_adv_i)||^2``;
  the pairing term runs through the ALP plugin's ``torchtrust_alp::weighted_pair_loss`` kernel.
"""

from toolkit_core import hookimpl

from .methods import AALP, adaptive_weights, find_head, guided_dropout, guided_mask, predicted_class

__all__ = ["AALP", "adaptive_weights", "find_head", "guided_dropout", "guided_mask", "predicted_class"]


@hookimpl
def torchtrust_register_defenses(register):
    register(AALP)
