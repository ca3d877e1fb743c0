"""ITID hypothesis invariance (Zheng et al., arXiv:1911.12603) -- operational definition (ours)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from toolkit_core.data import iterate_batches
from toolkit_core.features import Directions, device_of, require_data
from toolkit_core.methods import Metric
from toolkit_core.modelstate import preserved

from . import transforms as T


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """``TV(p, q) = 1/2 sum_k |p_k - q_k|`` per row."""
    return 0.5 * (p - q).abs().sum(1)


class Itid(Metric):
    """Hypothesis invariance under label-preserving transforms, and the ITID bound estimate.

    For transforms ``g`` in a set ``G`` and predictions ``h(x) = argmax f(x)``:

    * hard invariance ``Inv_g = E_x 1[h(g x) = h(x)]``;
    * soft invariance ``SInv_g = E_x [1 - TV(p(.|x), p(.|g x))]`` with ``p = softmax(f)``;
    * ``inv_hard`` / ``inv_soft``: the mean over ``G``; ``inv_hard/<spec>`` per transform and
      ``inv_hard/class_<k>`` per true class (mean over ``G``);
    * ``bound = R_emp + invariance_weight * (1 - inv_hard) + sqrt(ln(2/delta) / (2n))``, where
      ``R_emp`` is the 0-1 error on the data and ``n`` the number of samples.

    The paper text was unavailable: these are the operational definitions of docs/specs.md section 4
    (ours); in particular the bound is an estimate in the spirit of the ITID theory (empirical risk,
    a term growing with non-invariance, a Hoeffding confidence term), not the paper's theorem.
    Noise transforms use a generator seeded with ``seed``, so results are reproducible.
    """

    name = "itid"
    summary = "Hypothesis invariance per transform (hard and 1-TV soft) and the ITID bound estimate."
    citation = "arXiv:1911.12603"
    higher_is_better = Directions(
        inv_hard=True, inv_soft=True, accuracy=True, bound=False,
    )
    definitions = {
        "inv_hard": "share of inputs whose predicted class a transform leaves unchanged, mean over transforms",
        "inv_soft": "1 - total variation between softmax(f(x)) and softmax(f(g x)), mean over transforms g",
        "accuracy": "0-1 accuracy on the evaluation data",
        "bound": "ITID bound estimate: error + invariance_weight * (1 - inv_hard) + sqrt(ln(2/delta) / 2n)",
    }

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """The seed's claims: invariance enhancement raises hypothesis invariance (metrics stage); higher
        invariance goes with a smaller generalization gap (the Jiang et al. study)."""
        from toolkit_core.experiment.anchors import gap_claim, ordered

        if stage == "generalization":  # the ITID theory: more invariance, smaller gap
            return [gap_claim(stage, "higher hypothesis invariance (inv_hard) goes with a smaller generalization gap",
                              "Zheng et al. (seed, arXiv:1911.12603)", result, f"{label}.inv_hard") for label in labels]
        if stage != "metrics":
            return []
        return [ordered(stage, "training with invariance enhancement (itid_enhance) raises hypothesis "
                        "invariance (inv_hard) over plain training", "Zheng et al. (seed, arXiv:1911.12603)", result,
                        ("table", label, "itid_enhance", "inv_hard"), ("table", label, "plain", "inv_hard"),
                        ("itid_enhance", "plain")) for label in labels]

    def __init__(
        self,
        transforms: tuple[str, ...] = T.DEFAULT_TRANSFORMS,
        invariance_weight: float = 1.0,
        delta: float = 0.05,
        per_class: bool = True,
        seed: int = 0,
    ):
        if not transforms:
            raise ValueError("itid needs at least one transform, e.g. transforms=('rotate=10',)")
        if not 0 < delta < 1:
            raise ValueError(f"delta must lie in (0, 1), got {delta}")
        self.transforms = tuple(transforms)
        self._params = [T.parse(s) for s in self.transforms]  # validates the specs now
        self.invariance_weight = invariance_weight
        self.delta = delta
        self.per_class = per_class
        self.seed = seed

    @classmethod
    def contract_params(cls) -> dict:
        return {"transforms": ("translate=1,0", "rotate=10", "noise=0.05")}

    def compute(self, model, data) -> dict[str, float]:
        device = device_of(model)
        gen = torch.Generator().manual_seed(self.seed)
        k = len(self.transforms)
        hard = torch.zeros(k, dtype=torch.float64)
        soft = torch.zeros(k, dtype=torch.float64)
        cls_hard: dict[int, list[float]] = {}
        n = correct = batches = 0
        with preserved(model, mode=False), torch.no_grad():
            for x, y in iterate_batches(data):
                batches += 1
                x, y = x.to(device), y.to(device)
                p = torch.softmax(model(x).float(), 1)
                pred = p.argmax(1)
                same_all = torch.zeros(len(x), dtype=torch.float64)
                for i, params in enumerate(self._params):
                    q = torch.softmax(model(T.apply(x, params, gen)).float(), 1)
                    same = (q.argmax(1) == pred).double().cpu()
                    hard[i] += same.sum()
                    soft[i] += (1 - total_variation(p, q)).double().sum().cpu()
                    same_all += same
                if self.per_class:
                    for c, s in zip(y.cpu().tolist(), (same_all / k).tolist()):
                        cls_hard.setdefault(c, []).append(s)
                n += len(x)
                correct += int((pred == y).sum())
        require_data(batches if n else 0, self.name)
        hard, soft = hard / n, soft / n
        acc = correct / n
        inv = float(hard.mean())
        out = {
            "inv_hard": inv,
            "inv_soft": float(soft.mean()),
            "accuracy": acc,
            "bound": (1 - acc) + self.invariance_weight * (1 - inv) + math.sqrt(math.log(2 / self.delta) / (2 * n)),
        }
        for spec, h, s in zip(self.transforms, hard.tolist(), soft.tolist()):
            out[f"inv_hard/{spec}"] = h
            out[f"inv_soft/{spec}"] = s
        for c in sorted(cls_hard):
            out[f"inv_hard/class_{c}"] = sum(cls_hard[c]) / len(cls_hard[c])
        return out
