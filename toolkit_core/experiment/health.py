"""Health checks on an experiment's results: what a reader must know before trusting a figure.

Each check returns :class:`Flag` records; the report lists them at the top, marks the flagged rows in
their section, and leaves flagged values out of axis scaling.

* **at chance**: a model whose test accuracy is below ``CHANCE_FACTOR / C`` (``C`` classes: twice the
  rate of guessing) has learned (almost) nothing; its metrics and robustness numbers describe a
  collapsed model.
* **train/test gap**: ``train_acc - test_acc > GAP_THRESHOLD``: the model overfits the training subset.
* **identical models**: two models with exactly the same train accuracy, test accuracy and final loss:
  one method changed nothing in this run (a schedule that never fired, a setting ignored), so its rows
  repeat the other model's numbers.
* **gradient masking** (the signs of Athalye, Carlini & Wagner 2018, arXiv:1802.00420, sec. 3.1, and
  Carlini et al. 2019, arXiv:1902.06705): a single-step or a black-box (query-based) attack that beats
  an iterative white-box attack of the same norm and the same or larger eps by more than
  ``MASKING_MARGIN``; an iterative attack that leaves accuracy within
  ``MASKING_MARGIN`` of the clean accuracy of a model that is not at chance; inside an ensemble
  (AutoAttack), a black-box member lowering the accuracy left by the gradient-based members before it
  by more than ``MASKING_MARGIN`` (the robustness section also lists evaluate_robustness's per-seed
  warnings, at AutoAttack's own 0.2 % threshold).
* **NaN metric**: a metric value that is NaN or infinite.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .aggregate import finite_number

CHANCE_FACTOR = 2.0
GAP_THRESHOLD = 0.15
MASKING_MARGIN = 0.02

__all__ = ["Flag", "check_all", "collapsed_models"]


@dataclasses.dataclass
class Flag:
    """One finding: which stage, which subject (a model, a metric on a model), what, how bad."""

    check: str  # "at chance" | "train/test gap" | "identical models" | "gradient masking" | "NaN metric"
    stage: str
    subject: str
    message: str
    severity: str = "warning"  # "error": exclude the subject from comparisons; "warning": read with care

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_training(train: dict[str, Any], num_classes: int = 10) -> list[Flag]:
    flags = []
    chance = 1.0 / num_classes
    for label, row in train.get("models", {}).items():
        test, tr = row.get("test_acc"), row.get("train_acc")
        if finite_number(test) and test < CHANCE_FACTOR * chance:
            flags.append(Flag("at chance", "train", label,
                              f"{label}: test accuracy {test:.3f} is near chance (below {CHANCE_FACTOR:g} x 1/"
                              f"{num_classes}); its robustness and metric values describe a collapsed model",
                              "error"))
        if finite_number(test) and finite_number(tr) and tr - test > GAP_THRESHOLD:
            flags.append(Flag("train/test gap", "train", label,
                              f"{label}: train accuracy {tr:.3f} exceeds test accuracy {test:.3f} by "
                              f"{tr - test:.3f} (> {GAP_THRESHOLD})"))
    return flags + _identical_models(train)


def _identical_models(train: dict[str, Any]) -> list[Flag]:
    """Models whose train accuracy, test accuracy and final loss are all equal (every value finite)."""
    groups: dict[tuple, list[str]] = {}
    for label, row in train.get("models", {}).items():
        key = tuple(row.get(k) for k in ("train_acc", "test_acc", "final_loss"))
        if all(finite_number(v) for v in key):
            groups.setdefault(key, []).append(label)
    flags = []
    for (tr, test, loss), labels in groups.items():
        if len(labels) > 1:
            names = " and ".join(labels)
            flags.append(Flag("identical models", "train", " = ".join(labels),
                              f"{names} trained to identical numbers (train accuracy {tr:.4f}, test {test:.4f}, "
                              f"final loss {loss:.4f}): one of them changed nothing in this run (a schedule that "
                              "never fired, a setting without effect), so its rows repeat the other's model"))
    return flags


def _params(entry: dict[str, Any]) -> dict[str, Any]:
    """An attack's parameters from a robustness entry (``{"params": {...}}`` or ``{"params": {"params": ...}}``)."""
    p = entry.get("params", {}) or {}
    return p["params"] if isinstance(p.get("params"), dict) else p


def _attack_kind(params: dict[str, Any]) -> str:
    """"black-box" (a query budget), "iterative" (gradient steps) or "single-step", from its parameters."""
    if "n_queries" in params or "queries" in params:
        return "black-box"
    return "iterative" if "steps" in params else "single-step"


def _ensemble_flags(label: str, a: str, ra: dict[str, Any], clean: Any) -> list[Flag]:
    """A black-box member breaking points the gradient-based members before it left robust (cumulative
    accuracies ``ra["components"]``, member kinds ``ra["params"]["members"]``)."""
    from ..robustness import black_box_gains

    members = (ra.get("params") or {}).get("members") or {}
    return [Flag("gradient masking", "robustness", label,
                 f"{label}: inside {a}, the black-box member {sub} lowers the accuracy the gradient-based "
                 f"members left from {before:.3f} to {acc:.3f}: a sign of masked gradients (AutoAttack's "
                 "Square check, Croce & Hein 2020)")
            for sub, before, acc in black_box_gains(ra.get("components") or {}, members, clean, MASKING_MARGIN)]


def check_robustness(robustness: dict[str, Any], collapsed: set[str] = frozenset()) -> list[Flag]:
    flags = []
    for label, row in robustness.get("table", {}).items():
        clean = row.get("clean_accuracy")
        attacks = row.get("attacks", {})
        for a, ra in attacks.items():
            pa, acc_a = _params(ra), ra.get("accuracy")
            if ra.get("components"):  # an ensemble keeps its members' worst case: lower than each member
                flags += _ensemble_flags(label, a, ra, clean)  # by construction; its black-box member is checked
                continue
            if not finite_number(acc_a):
                continue
            kind_a = _attack_kind(pa)
            if kind_a == "iterative" and label not in collapsed and finite_number(clean) and clean > 0.2 \
                    and clean - acc_a < MASKING_MARGIN:
                flags.append(Flag("gradient masking", "robustness", label,
                                  f"{label}: iterative attack {a} lowers accuracy by only {clean - acc_a:.3f} "
                                  f"from clean {clean:.3f}; gradients may be masked"))
            if kind_a == "iterative":
                continue
            for b, rb in attacks.items():
                pb, acc_b = _params(rb), rb.get("accuracy")
                if _attack_kind(pb) != "iterative" or not finite_number(acc_b):
                    continue
                same_norm = str(pa.get("norm", "inf")) == str(pb.get("norm", "inf"))
                if same_norm and pb.get("eps", math.inf) >= pa.get("eps", math.inf) and \
                        acc_a < acc_b - MASKING_MARGIN:
                    flags.append(Flag("gradient masking", "robustness", label,
                                      f"{label}: {kind_a} {a} (accuracy {acc_a:.3f}) beats iterative {b} "
                                      f"({acc_b:.3f}) at the same or a larger eps: a sign of masked gradients "
                                      "(Athalye et al. 2018)"))
    return flags


def check_metrics(metrics: dict[str, Any]) -> list[Flag]:
    flags = []
    for name, per_model in metrics.get("table", {}).items():
        for label, values in per_model.items():
            bad = sorted(k for k, v in values.items() if "/" not in k and not finite_number(v))
            if bad:
                flags.append(Flag("NaN metric", "metrics", f"{name} on {label}",
                                  f"{name} on {label}: {', '.join(bad)} is NaN or infinite", "error"))
    return flags


def collapsed_models(flags: list[Flag]) -> set[str]:
    """Models whose numbers are left out of axis scaling (at chance)."""
    return {f.subject for f in flags if f.check == "at chance"}


def check_all(stages: dict[str, dict[str, Any]], num_classes: int = 10) -> list[Flag]:
    """Every check that applies to the stages present."""
    flags = check_training(stages["train"], num_classes) if "train" in stages else []
    collapsed = collapsed_models(flags)
    if "robustness" in stages:
        flags += check_robustness(stages["robustness"], collapsed)
    if "metrics" in stages:
        flags += check_metrics(stages["metrics"])
    return flags
