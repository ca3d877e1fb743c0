"""Output margin percentile (Jiang et al. 2019)."""

from __future__ import annotations

import torch

from toolkit_core.data import iterate_batches
from toolkit_core.features import Directions, device_of, require_data
from toolkit_core.methods import Metric
from toolkit_core.modelstate import preserved


def margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``gamma_i = f_{y_i}(x_i) - max_{j != y_i} f_j(x_i)`` (negative when misclassified)."""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return true - other


class Margin(Metric):
    """Output margin ``gamma_i = f_y(x_i) - max_{j != y} f_j(x_i)`` over the data (arXiv:1912.02178).

    * ``margin_p10``: the 10th percentile of ``gamma`` (Jiang et al.'s robust margin, ``quantile``);
    * ``margin_median``: the median; ``margin_p10/class_<k>``: the percentile within class ``k``.

    Larger is better. Margins are on the raw logits (not normalized by any norm).
    """

    name = "margin"
    summary = "10th-percentile output margin (true logit minus the largest other logit)."
    citation = "arXiv:1912.02178"
    higher_is_better = Directions(margin_p10=True, margin_median=True)
    definitions = {
        "margin_p10": "10th percentile (quantile) over samples of the true-class logit minus the largest other logit",
        "margin_median": "median over samples of the true-class logit minus the largest other logit",
    }

    def __init__(self, quantile: float = 0.1):
        if not 0 <= quantile <= 1:
            raise ValueError(f"quantile must lie in [0, 1], got {quantile}")
        self.quantile = quantile

    def compute(self, model, data) -> dict[str, float]:
        device = device_of(model)
        gs, ys = [], []
        with preserved(model, mode=False), torch.no_grad():
            for x, y in iterate_batches(data):
                x, y = x.to(device), y.to(device)
                logits = model(x)
                if y.numel() and (y.min() < 0 or y.max() >= logits.shape[1]):
                    raise ValueError(f"labels must lie in 0..{logits.shape[1] - 1}, got max {int(y.max())}")
                gs.append(margins(logits.double(), y).cpu())
                ys.append(y.cpu())
        require_data(sum(len(g) for g in gs), self.name)
        g, y = torch.cat(gs), torch.cat(ys)
        out = {"margin_p10": float(torch.quantile(g, self.quantile)), "margin_median": float(g.median())}
        for c in torch.unique(y).tolist():
            out[f"margin_p10/class_{c}"] = float(torch.quantile(g[y == c], self.quantile))
        return out
