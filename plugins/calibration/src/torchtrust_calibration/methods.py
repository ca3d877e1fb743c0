"""Calibration metrics ("Deep Probability Estimation", Liu et al., ICML 2022, arXiv:2111.10734).

For ``n`` samples with predicted class probabilities ``p_i`` (softmax of the logits), label ``y_i``,
confidence ``c_i = max_k p_ik`` and correctness ``a_i = [argmax_k p_ik = y_i]``, and a partition of the
samples into bins ``B_1..B_M`` by confidence:

* ``ECE = sum_m |B_m| / n * |mean_{B_m} a - mean_{B_m} c|`` (expected calibration error),
* ``MCE = max_m |mean_{B_m} a - mean_{B_m} c|`` over non-empty bins (maximum calibration error),
* ``Brier = 1/n sum_i sum_k (p_ik - [k = y_i])^2``,
* ``NLL = -1/n sum_i log p_{i y_i}``.

Bins are *equal-width* (``B_m = {i : c_i in ((m-1)/M, m/M]}``, the first bin closed at 0) or
*equal-mass* (the samples sorted by confidence and cut into ``M`` groups whose sizes differ by at most
one; ties are broken by sample order). The paper compares both binnings because equal-width ECE is
dominated by the few high-confidence bins of an accurate network.
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit_core.data import iterate_batches
from toolkit_core.features import device_of, require_data
from toolkit_core.methods import Metric
from toolkit_core.modelstate import preserved

__all__ = ["Calibration", "calibration_errors", "reliability_bins", "reliability_diagram"]


def _bin_index(conf: Tensor, bins: int, binning: str) -> Tensor:
    """Bin of each sample: ``0..bins-1``."""
    if binning == "width":
        return (torch.ceil(conf * bins).long() - 1).clamp(0, bins - 1)
    if binning == "mass":
        order = torch.argsort(conf, stable=True)
        idx = torch.empty_like(order)
        idx[order] = torch.arange(len(conf), device=conf.device) * bins // len(conf)
        return idx
    raise ValueError(f"binning must be 'width' or 'mass', got {binning!r}")


def reliability_bins(conf: Tensor, correct: Tensor, bins: int = 15, binning: str = "width") -> dict[str, Tensor]:
    """Per-bin ``count``, mean confidence ``conf`` and accuracy ``acc`` (NaN for an empty bin)."""
    idx = _bin_index(conf, bins, binning)
    count = torch.bincount(idx, minlength=bins).to(conf.dtype)
    s_conf = torch.zeros(bins, dtype=conf.dtype, device=conf.device).index_add_(0, idx, conf)
    s_acc = torch.zeros(bins, dtype=conf.dtype, device=conf.device).index_add_(0, idx, correct.to(conf.dtype))
    return {"count": count, "conf": s_conf / count, "acc": s_acc / count}


def calibration_errors(probs: Tensor, y: Tensor, bins: int = 15) -> dict[str, float]:
    """ECE (equal width and equal mass), MCE, Brier and NLL of probabilities ``probs`` (n, K) for labels ``y``."""
    if probs.ndim != 2 or y.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (n, classes) and y (n,), got {tuple(probs.shape)} and {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError("calibration needs at least one sample")
    p = probs.double()
    conf, pred = p.max(1)
    correct = pred == y
    out: dict[str, float] = {}
    for binning in ("width", "mass"):
        b = reliability_bins(conf, correct, bins, binning)
        full = b["count"] > 0
        gap = (b["acc"][full] - b["conf"][full]).abs()
        out[f"ece_{binning}"] = float((b["count"][full] / len(y) * gap).sum())
        if binning == "width":
            out["mce"] = float(gap.max())
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).double()
    out["brier"] = float(((p - onehot) ** 2).sum(1).mean())
    out["nll"] = float(-torch.log(p.gather(1, y[:, None]).clamp_min(torch.finfo(p.dtype).tiny)).mean())
    out["accuracy"] = float(correct.double().mean())
    return out


class Calibration(Metric):
    """Calibration of the softmax probabilities: ECE (equal-width and equal-mass bins), MCE, Brier, NLL.

    ``ECE = sum_m |B_m|/n |acc(B_m) - conf(B_m)|``; ``MCE = max_m |acc(B_m) - conf(B_m)|``;
    ``Brier = mean_i ||p_i - e_{y_i}||^2``; ``NLL = -mean_i log p_{i,y_i}``
    ("Deep Probability Estimation", Liu et al., ICML 2022). Lower is better for all but ``accuracy``.
    """

    name = "calibration"
    summary = "Expected/maximum calibration error (equal-width and equal-mass bins), Brier score and NLL."
    citation = "arXiv:2111.10734"
    higher_is_better = {"ece_width": False, "ece_mass": False, "mce": False, "brier": False, "nll": False,
                        "accuracy": True}
    definitions = {
        "ece_width": "Expected calibration error: bin-size-weighted mean |accuracy - confidence| over equal-width "
                     "confidence bins.",
        "ece_mass": "Expected calibration error over bins holding equal numbers of samples.",
        "mce": "Maximum calibration error: the largest |accuracy - confidence| over non-empty equal-width bins.",
        "brier": "Brier score: mean squared distance between the probability vector and the one-hot label.",
        "nll": "Negative log-likelihood of the true label under the softmax probabilities.",
        "accuracy": "Share of samples whose most probable class is the label.",
    }

    def __init__(self, bins: int = 15):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.bins = bins

    def probabilities(self, model, data) -> tuple[Tensor, Tensor]:
        """Softmax probabilities (float64, CPU) and labels over ``data``, in eval mode, model unchanged."""
        device = device_of(model)
        ps, ys = [], []
        with preserved(model, mode=False), torch.no_grad():
            for x, y in iterate_batches(data):
                logits = model(x.to(device))
                if y.numel() and (y.min() < 0 or y.max() >= logits.shape[1]):
                    raise ValueError(f"labels must lie in 0..{logits.shape[1] - 1}, got max {int(y.max())}")
                ps.append(torch.softmax(logits.double(), 1).cpu())
                ys.append(y.cpu())
        require_data(len(ps), self.name)
        return torch.cat(ps), torch.cat(ys)

    def compute(self, model, data) -> dict[str, float]:
        return calibration_errors(*self.probabilities(model, data), bins=self.bins)


def reliability_diagram(probs: Tensor, y: Tensor, bins: int = 15, ax=None, label: str | None = None):
    """Draw the reliability diagram (accuracy vs mean confidence per equal-width bin) on ``ax``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    conf, pred = probs.double().max(1)
    b = reliability_bins(conf, pred == y, bins, "width")
    full = b["count"] > 0
    centers = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    ax.bar(centers[full], b["acc"][full], width=1 / bins, edgecolor="k", alpha=0.7, label=label or "accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)  # outside the data
    return ax
