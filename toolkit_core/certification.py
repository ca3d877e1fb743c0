"""Certified accuracy of a certifier on a data set, and its curve over the radius.

``certify_dataset(certifier, model, data)`` streams ``(x, y)`` batches (a ``DataLoader``, a
``Dataset`` or a tuple of tensors; one batch on the device at a time) through
``certifier.certify(model, x)`` and records per point the prediction (``-1``: abstain) and the
certified radius. The certified accuracy at radius ``r`` (Cohen et al. 2019, arXiv:1902.02918, Fig. 1):

    certified_accuracy(r) = mean_i [ pred_i == y_i  and  radius_i >= r ]

``certified_accuracy(0)`` is the accuracy of the certified classifier (abstentions count as errors);
the curve is non-increasing in ``r``.

Example::

    import toolkit_core as tt
    from toolkit_core.certification import certify_dataset
    res = certify_dataset(tt.create("randomized_smoothing", sigma=0.25), model, test_loader, limit=500)
    res.curve([0.0, 0.25, 0.5, 1.0])     # {0.0: 0.81, 0.25: 0.66, ...}
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .data import iterate_batches
from .methods import Certifier

__all__ = ["CertificationResult", "certify_dataset"]


@dataclasses.dataclass
class CertificationResult:
    """Per-point outcome: ``labels``, ``predictions`` (``-1`` abstain) and ``radii`` (norm ``norm``)."""

    labels: torch.Tensor
    predictions: torch.Tensor
    radii: torch.Tensor
    norm: str = "l2"
    seconds: float = 0.0
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.numel())

    def certified_accuracy(self, radius: float) -> float:
        """Fraction of points predicted correctly with a certified radius of at least ``radius``."""
        if not self.n:
            return float("nan")
        ok = (self.predictions == self.labels) & (self.radii >= radius)
        return float(ok.float().mean())

    def curve(self, radii: Sequence[float]) -> dict[float, float]:
        """``{r: certified_accuracy(r)}`` for each radius in ``radii``."""
        return {float(r): self.certified_accuracy(float(r)) for r in radii}

    @property
    def abstain_rate(self) -> float:
        return float((self.predictions == -1).float().mean()) if self.n else float("nan")

    @property
    def average_radius(self) -> float:
        """Mean certified radius of the correctly classified points (0 for the others): the ACR."""
        if not self.n:
            return float("nan")
        return float(torch.where(self.predictions == self.labels, self.radii, 0.0).mean())

    def to_dict(self, radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> dict[str, Any]:
        return {
            "n": self.n,
            "norm": self.norm,
            "curve": {str(r): a for r, a in self.curve(radii).items()},
            "abstain_rate": self.abstain_rate,
            "average_certified_radius": self.average_radius,
            "params": self.params,
        }  # no wall time here: equal seeds give equal dicts (``seconds`` is an attribute)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def certify_dataset(
    certifier: Certifier | str,
    model: nn.Module,
    data,
    batch_size: int = 64,
    limit: int | None = None,
    device: torch.device | str | None = None,
) -> CertificationResult:
    """Certify every point of ``data`` (at most ``limit``); see the module docstring."""
    from .catalog import resolve

    certifier = resolve(certifier, kind="certifier")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    device = torch.device(device) if device is not None else _device(model)
    labels, preds, radii = [], [], []
    seen = 0
    t0 = time.perf_counter()
    for x, y in iterate_batches(data, batch_size):
        if limit is not None:
            if seen >= limit:
                break
            x, y = x[: limit - seen], y[: limit - seen]
        pred, radius = certifier.certify(model, x.to(device))
        labels.append(y.cpu().long())
        preds.append(pred.cpu().long())
        radii.append(radius.detach().cpu().float())
        seen += len(y)
    if not labels:
        raise ValueError("data yielded no batches: nothing to certify")
    params = {p.name: getattr(certifier, p.name, p.default) for p in certifier.info.parameters}
    params = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)) for k, v in params.items()}
    return CertificationResult(torch.cat(labels), torch.cat(preds), torch.cat(radii), type(certifier).norm,
                               time.perf_counter() - t0, {"name": certifier.name, "params": params})
