"""Product of spectral norms (Bartlett et al. 2017; as measured by Jiang et al. 2019)."""

from __future__ import annotations

import math

import torch
from torch import nn

from toolkit_core.features import Directions
from toolkit_core.methods import Metric

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, W)`` of every linear and convolutional layer; conv kernels reshaped to ``(out, in*k*k)``."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, _LAYERS):
            out.append((name or "<root>", m.weight.detach().double().flatten(1).cpu()))
    return out


class SpectralProduct(Metric):
    """Products of layer norms (Jiang et al. 2019, arXiv:1912.02178, eqs. 32-37).

    * ``log_spectral_product = sum_l log ||W_l||_2^2`` (``log.prod.of.spec``);
    * ``log_frobenius_product = sum_l log ||W_l||_F^2`` (``log.prod.of.fro``);
    * ``spectral_norm/<layer> = ||W_l||_2`` per layer.

    Layers: every ``nn.Linear`` and ``nn.Conv*``; a convolution kernel is reshaped to the matrix
    ``(out, in * prod(kernel))`` -- the cheap proxy Jiang et al. use, not the operator norm of the
    convolution. Biases are ignored. ``data`` is not read (may be ``None``).
    """

    name = "spectral_product"
    summary = "Log product of the layers' squared spectral (and Frobenius) norms."
    citation = "arXiv:1912.02178"
    higher_is_better = Directions(log_spectral_product=False, log_frobenius_product=False, spectral_norm=False)
    definitions = {
        "log_spectral_product": "sum over layers of log ||W||_2^2 (largest singular value squared)",
        "log_frobenius_product": "sum over layers of log ||W||_F^2",
        "spectral_norm": "largest singular value ||W||_2 of one layer",
    }

    def compute(self, model, data=None) -> dict[str, float]:
        mats = layer_matrices(model)
        if not mats:
            raise ValueError(
                f"{type(model).__name__} has no nn.Linear or nn.Conv layer; the spectral product is undefined"
            )
        out = {"log_spectral_product": 0.0, "log_frobenius_product": 0.0}
        for name, w in mats:
            s = float(torch.linalg.matrix_norm(w, ord=2))
            out["log_spectral_product"] += 2 * math.log(max(s, 1e-300))
            out["log_frobenius_product"] += 2 * math.log(max(float(w.norm()), 1e-300))
            out[f"spectral_norm/{name}"] = s
        return out
