"""Magnitude-aware PAC-Bayes sharpness (Jiang et al. 2019, "Fantastic generalization measures")."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.func import functional_call

from toolkit_core.data import iterate_batches
from toolkit_core.features import Directions, device_of, require_data
from toolkit_core.methods import Metric
from toolkit_core.modelstate import preserved


def _evaluate(model, data, params, criterion: str) -> float:
    """Mean 0-1 error or cross-entropy of ``model`` with ``params`` substituted (no mutation)."""
    device = device_of(model)
    total = value = 0.0
    batches = 0
    for x, y in iterate_batches(data):
        batches += 1
        x, y = x.to(device), y.to(device)
        logits = functional_call(model, params, (x,)) if params is not None else model(x)
        if criterion == "error":
            value += float((logits.argmax(1) != y).sum())
        else:
            value += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        total += len(y)
    require_data(batches if total else 0, "sharpness")
    return value / total


def sharpness_curve(
    model: torch.nn.Module,
    data,
    sigmas,
    samples: int = 4,
    criterion: Literal["error", "loss"] = "error",
    eps: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Expected increase of the error (or loss) under magnitude-aware weight noise, for each sigma.

    ``dev(sigma) = 1/M sum_m L(w + sigma (|w| + eps) xi_m) - L(w)`` with ``xi_m ~ N(0, I)`` drawn
    once from ``seed`` and shared by every sigma (common random numbers) and antithetic pairs
    ``xi_{2j+1} = -xi_{2j}`` (``M = samples`` rounded up to even). ``dev(0) = 0`` exactly; for a loss
    that is convex in the weights (e.g. cross-entropy of a linear model) ``dev`` is non-decreasing in
    sigma. The model is never mutated (``torch.func.functional_call``) and is evaluated in eval mode.
    """
    pairs = max(1, math.ceil(samples / 2))
    with preserved(model, mode=False), torch.no_grad():
        base = _evaluate(model, data, None, criterion)
        named = dict(model.named_parameters())
        scale = {k: p.detach().abs() + eps for k, p in named.items()}
        out = []
        for sigma in sigmas:
            if sigma == 0:
                out.append(0.0)
                continue
            gen = torch.Generator().manual_seed(seed)
            acc = 0.0
            for _ in range(pairs):
                xi = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for k, p in named.items()}
                for sign in (1.0, -1.0):
                    params = {k: p.detach() + sign * sigma * scale[k] * xi[k] for k, p in named.items()}
                    acc += _evaluate(model, data, params, criterion)
            out.append(acc / (2 * pairs) - base)
    return out


class Sharpness(Metric):
    """Magnitude-aware PAC-Bayes sharpness (Jiang et al. 2019, arXiv:1912.02178, sec. C.3).

    Perturb every parameter as ``w_i + sigma (|w_i| + eps) xi_i`` with ``xi ~ N(0, 1)`` and find by
    bisection the largest ``sigma' `` with expected deviation ``dev(sigma') <= target`` (default: the
    0-1 training error rises by at most 0.1, as in the paper; see :func:`sharpness_curve`). Reported:

    * ``mag_sigma = sigma'`` (flatter: larger);
    * ``mag_flatness = 1 / sigma'^2`` (Jiang's ``pacbayes.mag.flatness``);
    * ``mag_pac_bayes = 1/4 sum_i log((eps^2 + (sigma'^2 + 1) ||w||^2 / omega) / (eps^2 + sigma'^2 w_i^2))
      + log(m / delta) + 10`` (Jiang's ``pacbayes.mag.orig``: reference weights 0, ``omega`` parameters,
      ``m`` samples).

    Deviation from the paper: the paper's noise std is ``sigma |w_i| + eps``; here ``eps`` is scaled by
    sigma too, so that sigma = 0 means no perturbation (the difference is below 1e-3 sigma per weight).
    The search starts on ``[0, sigma_max]`` (doubling ``sigma_max`` up to 4 times while the target is
    not reached) and runs ``steps`` bisection steps; if even the smallest tried sigma exceeds the target,
    ``sigma'`` is the smallest sigma tried (the resolution). Seeded and deterministic.
    """

    name = "sharpness"
    summary = "Magnitude-aware PAC-Bayes sharpness: largest relative weight noise keeping the error within target."
    citation = "arXiv:1912.02178"
    higher_is_better = Directions(mag_sigma=True, mag_flatness=False, mag_pac_bayes=False)
    definitions = {
        "mag_sigma": "largest relative weight-noise scale sigma' keeping the error rise within target",
        "mag_flatness": "1 / sigma'^2 (Jiang et al.'s pacbayes.mag.flatness)",
        "mag_pac_bayes": "magnitude-aware PAC-Bayes bound term at sigma' (Jiang et al.'s pacbayes.mag.orig)",
    }

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """Jiang et al. 2019: magnitude-aware sharpness is among the best predictors of the gap (by Psi)."""
        if stage != "generalization":
            return []
        from toolkit_core.experiment.anchors import JIANG, gap_claim

        return [gap_claim(stage, "magnitude-aware sharpness predicts the gap (granulated Psi above 0)", JIANG,
                          result, f"{label}.mag_sigma", by="psi",
                          note="Jiang et al. rank the PAC-Bayes magnitude-aware measures among the best")
                for label in labels]

    def __init__(
        self,
        target: float = 0.1,
        criterion: Literal["error", "loss"] = "error",
        steps: int = 10,
        samples: int = 4,
        sigma_max: float = 1.0,
        eps: float = 1e-3,
        delta: float = 0.05,
        seed: int = 0,
    ):
        if target <= 0:
            raise ValueError(f"target must be positive, got {target}")
        if steps < 1 or samples < 1:
            raise ValueError(f"steps and samples must be at least 1, got {steps} and {samples}")
        self.target, self.criterion, self.steps, self.samples = target, criterion, steps, samples
        self.sigma_max, self.eps, self.delta, self.seed = sigma_max, eps, delta, seed

    @classmethod
    def contract_params(cls) -> dict:
        return {"steps": 3, "samples": 2}

    def _dev(self, model, data, sigma: float) -> float:
        return sharpness_curve(model, data, [sigma], self.samples, self.criterion, self.eps, self.seed)[0]

    def search(self, model, data) -> float:
        """The bisection: largest sigma (to ``steps`` halvings) with ``dev(sigma) <= target``."""
        hi = self.sigma_max
        for _ in range(4):
            if self._dev(model, data, hi) > self.target:
                break
            hi *= 2
        else:
            return hi
        lo = 0.0
        for _ in range(self.steps):
            mid = (lo + hi) / 2
            if self._dev(model, data, mid) <= self.target:
                lo = mid
            else:
                hi = mid
        return lo if lo > 0 else hi

    def compute(self, model, data) -> dict[str, float]:
        m = sum(len(y) for _, y in iterate_batches(data))
        require_data(m, self.name)
        sigma = self.search(model, data)
        w = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
        omega, e2, s2 = w.numel(), self.eps ** 2, sigma ** 2
        num = e2 + (s2 + 1) * float(w.pow(2).sum()) / omega
        kl = 0.25 * float(torch.log(num / (e2 + s2 * w.pow(2))).sum())
        return {
            "mag_sigma": sigma,
            "mag_flatness": 1.0 / s2,
            "mag_pac_bayes": kl + math.log(m / self.delta) + 10,
        }
