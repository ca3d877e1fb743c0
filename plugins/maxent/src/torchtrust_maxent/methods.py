"""Feature conditions of the maximum-entropy view (Zheng, Sang & Xu, arXiv:1711.07758) -- ours."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from toolkit_core.features import ClassStatistics, Directions, collect_features
from toolkit_core.methods import Metric


def total_correlation(cov: Tensor, shrinkage: float = 1e-3, var_floor: float = 1e-10) -> float:
    """Gaussian total correlation ``-1/2 log det Corr`` of a covariance matrix.

    Features with variance ``<= var_floor * max(var)`` (dead units) are dropped; the correlation
    matrix is shrunk towards the identity, ``Corr_eps = (Corr + eps I) / (1 + eps)`` with
    ``eps = shrinkage``, which bounds its smallest eigenvalue below by ``eps / (1 + eps)`` (so a
    rank-deficient estimate, e.g. fewer samples than features, gives a finite value). For independent
    features the value is 0; for two features with correlation ``rho`` it is ``-1/2 log(1 - rho^2)``
    (up to the shrinkage).
    """
    cov = cov.double()
    var = torch.diagonal(cov)
    if var.numel() == 0 or float(var.max()) <= 0:
        return 0.0
    keep = var > var_floor * var.max()
    cov = cov[keep][:, keep]
    sd = torch.diagonal(cov).sqrt()
    corr = cov / (sd[:, None] * sd[None, :])
    corr = (corr + shrinkage * torch.eye(len(corr), dtype=corr.dtype)) / (1 + shrinkage)
    eig = torch.linalg.eigvalsh((corr + corr.T) / 2).clamp_min(shrinkage / (1 + shrinkage))
    return float(-0.5 * eig.log().sum())


def fit_probe(t: Tensor, y: Tensor, num_classes: int, l2: float = 1e-3, steps: int = 100) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression on ``t`` (float64), L2 penalty ``l2 ||W||^2`` (not the bias),
    fitted with L-BFGS from zero. Returns ``(W (D, C), b (C,))``."""
    w = torch.zeros(t.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(t @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


class MaxEnt(Metric):
    """Sufficiency and redundancy of the penultimate features ``T`` (maximum-entropy view).

    * ``sufficiency_gap = CE_model - CE_probe`` on a held-out half: ``CE_model`` is the model's own
      cross-entropy, ``CE_probe`` that of a freshly fitted linear softmax probe on standardized ``T``
      (fitted on the other half). The halves come from a permutation seeded with ``seed``, so the
      split is deterministic. Near 0: ``T`` keeps the label information a linear classifier can use and
      the model's head uses it; positive: the head is worse than a fresh probe on the same features.
    * ``redundancy_global = -1/2 log det Corr(T)`` (Gaussian total correlation over all samples) and
      ``redundancy_within``: the same within each class (``redundancy_within/class_<k>``), averaged
      over classes with at least two samples. Lower means closer to independent features. See
      :func:`total_correlation` for the regularization (dead units dropped, shrinkage ``shrinkage``).

    The paper text was unavailable: these are the operational definitions of docs/specs.md section 4
    (ours). Covariances come from the fused per-class scatter kernel.
    """

    name = "maxent"
    summary = "Max-entropy feature conditions: sufficiency gap vs a linear probe, Gaussian total correlation."
    citation = "arXiv:1711.07758"
    kernels = ("torchtrust_features::class_scatter",)
    higher_is_better = Directions(
        sufficiency_gap=False, ce_model_heldout=False, ce_probe_heldout=False, probe_accuracy=True,
        redundancy_global=False, redundancy_within=False,
    )
    definitions = {
        "sufficiency_gap": "held-out cross-entropy of the model minus that of a fresh linear probe on its features",
        "ce_model_heldout": "the model's own cross-entropy on the held-out half",
        "ce_probe_heldout": "cross-entropy of a linear softmax probe on the penultimate features, held-out half",
        "probe_accuracy": "accuracy of that linear probe on the held-out half",
        "redundancy_global": "Gaussian total correlation -1/2 log det Corr(T) of the penultimate features",
        "redundancy_within": "the same total correlation within each class, averaged over classes",
    }

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """The seed's maximum-entropy conditions, read on the Jiang et al. study: features closer to
        sufficient, and less redundant ones, go with a smaller generalization gap."""
        if stage != "generalization":
            return []
        from toolkit_core.experiment.anchors import gap_claim

        src = "maximum-entropy conditions (seed, arXiv:1711.07758)"
        out = []
        for label in labels:
            out.append(gap_claim(stage, "features closer to sufficient (smaller sufficiency_gap) generalize better",
                                 src, result, f"{label}.sufficiency_gap"))
            out.append(gap_claim(stage, "less redundant features (smaller redundancy_within) generalize better",
                                 src, result, f"{label}.redundancy_within"))
        return out

    def __init__(
        self,
        feature_layer: str | None = None,
        probe_l2: float = 1e-3,
        probe_steps: int = 100,
        shrinkage: float = 1e-3,
        seed: int = 0,
    ):
        self.feature_layer, self.probe_l2, self.probe_steps = feature_layer, probe_l2, probe_steps
        self.shrinkage, self.seed = shrinkage, seed

    @classmethod
    def contract_params(cls) -> dict:
        return {"probe_steps": 20}

    def compute(self, model, data) -> dict[str, float]:
        t, logits, y = collect_features(model, data, self.feature_layer, self.name)
        t, logits, y = t.double().cpu(), logits.double().cpu(), y.cpu()
        n, c = len(y), logits.shape[1]
        if n < 4:
            raise ValueError(f"{self.name} needs at least 4 samples (two halves for the probe), got {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        fit, held = perm[: n // 2], perm[n // 2:]
        mu, sd = t[fit].mean(0), t[fit].std(0).clamp_min(1e-8)
        z = (t - mu) / sd
        w, b = fit_probe(z[fit], y[fit], c, self.probe_l2, self.probe_steps)
        probe_logits = z[held] @ w + b
        ce_model = float(F.cross_entropy(logits[held], y[held]))
        ce_probe = float(F.cross_entropy(probe_logits, y[held]))
        stats = ClassStatistics(c, t.shape[1])
        stats.update(t, y)
        within = {}
        for k, cov in zip(stats.present.tolist(), stats.class_covariances()):
            if stats.counts[k] >= 2:
                within[k] = total_correlation(cov, self.shrinkage)
        out = {
            "sufficiency_gap": ce_model - ce_probe,
            "ce_model_heldout": ce_model,
            "ce_probe_heldout": ce_probe,
            "probe_accuracy": float((probe_logits.argmax(1) == y[held]).double().mean()),
            "redundancy_global": total_correlation(stats.total_covariance(), self.shrinkage),
        }
        if within:
            out["redundancy_within"] = sum(within.values()) / len(within)
        for k, v in within.items():
            out[f"redundancy_within/class_{k}"] = v
        return out
