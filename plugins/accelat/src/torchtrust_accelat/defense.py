"""AccelAT: adversarial training with an accuracy-gradient learning-rate schedule (arXiv:2210.06888).

Only the paper's abstract was available to us; the schedule below is our operational reading of
"automatically adjusts the learning rate for different epochs based on the accuracy gradient"
(docs/methods/accelat.md says why).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from torchtrust_pgd_at import PGDAT

from toolkit_core.methods import Attack, Scale


def next_learning_rate(lr: float, stalls: int, epoch: int, patience: int, warmup: int, factor: float,
                       min_lr: float) -> float:
    """The rate for the next epoch: ``max(factor * lr, min_lr)`` once ``stalls >= patience`` (and the
    warm-up is over, ``epoch >= warmup``), else ``lr``. A rate already at or below ``min_lr`` is left as
    it is (the floor never raises a rate)."""
    if epoch < warmup or stalls < patience or lr <= min_lr:
        return lr
    return max(factor * lr, min_lr)


class AccelAT(PGDAT):
    """PGD adversarial training with the learning rate adapted from the accuracy gradient (AccelAT).

    The objective is PGD-AT's, ``L = 1/B sum_i CE(f(x_adv_i), y_i)`` (Madry et al. 2018). After every
    epoch ``t`` (counted from 0; ``Defense.end_epoch``), with ``a_t`` the monitored accuracy::

        g_t       = a_t - a_{t-1}                                  (the accuracy gradient, per epoch; t >= 1)
        s_t       = s_{t-1} + 1 if g_t < threshold else 0          (consecutive stalled epochs; s_0 = 0)
        eta_{t+1} = max(factor * eta_t, min_lr), s_t := 0   if s_t >= patience and t >= warmup
                    eta_t                                    otherwise

    for every parameter group of the optimizer. ``a_t`` is the validation accuracy when ``fit`` is
    given ``eval_data`` (``eval_adv_acc`` for ``monitor="adv"``, ``eval_clean_acc`` for ``"clean"``),
    else the epoch's training accuracy on the same batches (``adv_acc`` / ``clean_acc``). Training starts
    from a high rate (``fit``'s ``lr``) and keeps it while the accuracy still climbs by at least
    ``threshold`` per epoch, dropping it when the climb stalls, instead of at fixed epochs.

    Parameters: ``attack`` (the inner maximization, e.g. ``create("pgd", eps=..., steps=10)``),
    ``track_clean`` (also log the batch's clean accuracy), ``monitor`` (``"adv"`` or ``"clean"``),
    ``threshold`` (the accuracy gain per epoch below which an epoch counts as stalled), ``patience``
    (stalled epochs in a row before a drop; 1 = drop at the first stall), ``warmup`` (no drop before
    epoch ``warmup``), ``factor`` (in ``(0, 1)``), ``min_lr`` (floor). The history gains ``lr`` (the
    rate the epoch ran with) and ``accuracy_gradient``.
    """

    name = "accelat"
    summary = "AccelAT: PGD adversarial training whose learning rate drops when the validation accuracy stops rising."
    citation = "arXiv:2210.06888"
    state_attributes = ("previous_accuracy", "stalls", "reductions")

    def __init__(self, attack: Attack | None = None, track_clean: bool = True, monitor: Literal["adv", "clean"] = "adv",
                 threshold: float = 0.01, patience: int = 2, warmup: int = 0, factor: float = 0.5,
                 min_lr: float = 1e-5):
        super().__init__(attack=attack, track_clean=track_clean)
        if monitor not in ("adv", "clean"):
            raise ValueError(f"accelat: monitor must be 'adv' or 'clean', got {monitor!r}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"accelat: factor must lie in (0, 1) (the rate is multiplied by it), got {factor!r}")
        if not min_lr >= 0.0:
            raise ValueError(f"accelat: min_lr must be >= 0, got {min_lr!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"accelat: threshold must be a finite number, got {threshold!r}")
        if patience < 1 or warmup < 0:
            raise ValueError(f"accelat: patience must be >= 1 and warmup >= 0, got {patience!r}, {warmup!r}")
        self.monitor, self.threshold, self.factor, self.min_lr = monitor, float(threshold), float(factor), float(min_lr)
        self.patience, self.warmup = int(patience), int(warmup)
        self.track_clean = bool(track_clean) or monitor == "clean"
        self.previous_accuracy: float | None = None
        self.stalls = 0
        self.reductions = 0

    #: Full runs of the default experiment (6 epochs): the defaults (0.01, patience 2) suit budgets of tens
    #: of epochs; in 6 epochs on the digits the training PGD accuracy still climbs by 0.26, 0.15, 0.07,
    #: 0.05, 0.03 (measured), so the rule never fired and AccelAT trained PGD-AT's model bit for bit. With
    #: a stall below 0.08 per epoch and patience 1 the rate halves from about the fourth epoch on.
    EXPERIMENT_PARAMS = {"threshold": 0.08, "patience": 1}

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict]:
        """Full runs: :data:`EXPERIMENT_PARAMS`. Quick runs (3 epochs): left out -- the accuracy climbs by
        more than any sensible threshold in the first epochs, so a quick run would train PGD-AT's model twice."""
        return [] if scale.quick else [dict(cls.EXPERIMENT_PARAMS)]

    def monitored(self, metrics: Mapping[str, float]) -> float:
        """``a_t``: the validation accuracy if ``fit`` evaluated, else the epoch's training accuracy."""
        for key in (f"eval_{self.monitor}_acc", f"{self.monitor}_acc"):
            if key in metrics and math.isfinite(metrics[key]):
                return float(metrics[key])
        raise KeyError(f"accelat: the epoch's metrics hold neither eval_{self.monitor}_acc nor {self.monitor}_acc "
                       f"(got {sorted(metrics)}); pass eval_data to fit, or monitor='clean'/'adv' to match the logs")

    def start_epoch(self, epoch: int, epochs: int) -> None:
        if epoch == 0:  # a fresh run (a resumed one starts later, with the state from the checkpoint)
            self.previous_accuracy, self.stalls, self.reductions = None, 0, 0

    def end_epoch(self, epoch, epochs, metrics, optimizer):
        accuracy = self.monitored(metrics)
        out = {"lr": float(optimizer.param_groups[0]["lr"])}
        if self.previous_accuracy is not None:
            gradient = accuracy - self.previous_accuracy
            out["accuracy_gradient"] = gradient
            self.stalls = self.stalls + 1 if gradient < self.threshold else 0
        changed = False
        for group in optimizer.param_groups:
            new = next_learning_rate(float(group["lr"]), self.stalls, epoch, self.patience, self.warmup,
                                     self.factor, self.min_lr)
            changed |= new != group["lr"]
            group["lr"] = new
        if changed:
            self.reductions += 1
        if self.stalls >= self.patience and epoch >= self.warmup:
            self.stalls = 0
        self.previous_accuracy = accuracy
        return out
