"""Neural collapse NC1-NC4 (Papyan, Han & Donoho 2020, arXiv:2008.08186)."""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit_core.features import ClassStatistics, Directions, class_statistics, feature_batches, find_head
from toolkit_core.methods import Metric


def nc1(stats: ClassStatistics, rcond: float = 1e-10) -> tuple[float, Tensor]:
    """``NC1 = tr(Sigma_W Sigma_B^+) / C`` and the per-class terms ``tr(w_c Sigma_c Sigma_B^+) / C``
    (``w_c = n_c / N``; they sum to NC1)."""
    c = len(stats.present)
    pinv = torch.linalg.pinv(stats.between(), rtol=rcond, hermitian=True)
    w = stats.counts[stats.present] / stats.counts.sum()
    per = torch.einsum("cij,ji->c", stats.class_covariances(), pinv) * w / c
    return float(per.sum()), per


def nc2(means: Tensor, global_mean: Tensor) -> tuple[float, float, float]:
    """(CV of centred class-mean norms, std of their pairwise cosines, mean |cos + 1/(C-1)|)."""
    m = means - global_mean
    norms = m.norm(dim=1)
    cv = float(norms.std(unbiased=False) / norms.mean()) if float(norms.mean()) > 0 else 0.0
    c = len(m)
    if c < 2:
        return cv, 0.0, 0.0
    u = m / norms.clamp_min(1e-30)[:, None]
    cos = u @ u.T
    iu = torch.triu_indices(c, c, 1)
    pair = cos[iu[0], iu[1]]
    return cv, float(pair.std(unbiased=False)), float((pair + 1 / (c - 1)).abs().mean())


def nc3(weight: Tensor, means: Tensor, global_mean: Tensor) -> float:
    """``|| W/||W||_F - M/||M||_F ||_F^2`` with ``M`` the centred class means (rows = classes)."""
    m = means - global_mean
    return float((weight / weight.norm() - m / m.norm()).pow(2).sum())


class NeuralCollapse(Metric):
    """Neural collapse of the penultimate features ``h`` (Papyan, Han & Donoho 2020).

    With class means ``mu_c``, global mean ``mu_G``, within/between-class covariances
    ``Sigma_W``/``Sigma_B`` (see :class:`toolkit_core.features.ClassStatistics`) over the ``C`` classes
    present in the data:

    * ``nc1 = tr(Sigma_W Sigma_B^+) / C`` (variability collapse; ``nc1/class_<k>`` are the class terms);
    * ``nc2_norm_cv``: coefficient of variation of ``||mu_c - mu_G||`` (equinorm), ``nc2_cos_std``: std
      of the pairwise cosines of the centred means, ``nc2_cos_shift``: mean ``|cos + 1/(C-1)|`` (simplex ETF);
    * ``nc3 = || W/||W||_F - M/||M||_F ||_F^2`` (self-duality; ``W`` the rows of the last linear layer for
      the present classes, ``M`` the centred means); left out when the head does not act on the features;
    * ``nc4``: fraction of samples where the model's prediction differs from the nearest-class-centre rule.

    Lower is better for every key. Two streaming passes: class statistics (fused per-class scatter
    kernel ``torchtrust_features::class_scatter``), then the nearest-centre disagreement.
    """

    name = "neural_collapse"
    summary = "Neural collapse NC1-NC4 of the penultimate features (variability, ETF, self-duality, NCC)."
    citation = "arXiv:2008.08186"
    kernels = ("torchtrust_features::class_scatter",)
    higher_is_better = Directions(nc1=False, nc2_norm_cv=False, nc2_cos_std=False, nc2_cos_shift=False,
                                  nc3=False, nc4=False)
    definitions = {
        "nc1": "within-class variability: tr(Sigma_W Sigma_B^+) / C of the penultimate features (0 = collapsed)",
        "nc2_norm_cv": "coefficient of variation of the centred class-mean norms (0 = equinorm)",
        "nc2_cos_std": "std of the pairwise cosines between centred class means (0 = equiangular)",
        "nc2_cos_shift": "mean |cos + 1/(C-1)| of the class-mean pairs: distance from a simplex ETF's angles",
        "nc3": "|| W/||W|| - M/||M|| ||_F^2: classifier rows vs centred class means (0 = self-dual)",
        "nc4": "share of samples where the nearest class centre disagrees with the model's prediction",
    }

    def __init__(self, feature_layer: str | None = None, num_classes: int | None = None, rcond: float = 1e-10):
        self.feature_layer, self.num_classes, self.rcond = feature_layer, num_classes, rcond

    def compute(self, model, data) -> dict[str, float]:
        stats = class_statistics(model, data, self.num_classes, self.feature_layer, self.name)
        present = stats.present
        means, gmean = stats.means(), stats.global_mean()
        value, per = nc1(stats, self.rcond)
        out = {"nc1": value}
        out["nc2_norm_cv"], out["nc2_cos_std"], out["nc2_cos_shift"] = nc2(means, gmean)
        try:
            head = find_head(model)[1]
        except ValueError:
            head = None
        if head is not None and head.in_features == stats.dim and head.out_features >= int(present.max()) + 1:
            out["nc3"] = nc3(head.weight.detach().double().cpu()[present], means, gmean)
        # NC4: second pass, nearest class centre vs the model's prediction
        centres = means.float()
        disagree = total = 0
        for t, logits, _ in feature_batches(model, data, self.feature_layer, self.name):
            ncc = present.to(t.device)[torch.cdist(t.float(), centres.to(t.device)).argmin(1)]
            disagree += int((ncc != logits.argmax(1)).sum())
            total += len(t)
        out["nc4"] = disagree / total
        for c, v in zip(present.tolist(), per.tolist()):
            out[f"nc1/class_{c}"] = v
        return out
