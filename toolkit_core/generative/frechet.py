"""Frechet distance between real and generated samples in a caller-supplied feature space.

``FD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})`` with means/covariances of the features
(Heusel et al. 2017, arXiv:1706.08500, "FID" when the features are Inception's; here the caller passes
any extractor, e.g. the penultimate layer of a small digits classifier -- nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def _features(x, features: Callable | None, batch_size: int) -> np.ndarray:
    x = torch.as_tensor(x).detach()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            f = x[s : s + batch_size] if features is None else features(x[s : s + batch_size])
            out.append(torch.as_tensor(f).detach().double().cpu().reshape(len(f), -1))
    return torch.cat(out).numpy()


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Frechet distance between ``N(mu1, s1)`` and ``N(mu2, s2)``."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product: regularize as in the reference FID code
        eps = 1e-6 * np.eye(len(s1))
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean), 0.0))


def frechet_distance(real: Tensor, fake: Tensor, features: Callable[[Tensor], Tensor] | None = None,
                     batch_size: int = 256) -> float:
    """Frechet distance between ``real`` and ``fake`` samples after ``features`` (identity if ``None``)."""
    fr, fg = _features(real, features, batch_size), _features(fake, features, batch_size)
    if len(fr) < 2 or len(fg) < 2:
        raise ValueError("the Frechet distance needs at least 2 real and 2 generated samples")
    if fr.shape[1] != fg.shape[1]:
        raise ValueError(f"feature dimensions differ: {fr.shape[1]} (real) vs {fg.shape[1]} (generated)")
    if not (np.isfinite(fr).all() and np.isfinite(fg).all()):
        raise ValueError("features contain NaN or infinite values")
    s1 = np.atleast_2d(np.cov(fr, rowvar=False))
    s2 = np.atleast_2d(np.cov(fg, rowvar=False))
    return frechet_from_stats(fr.mean(0), s1, fg.mean(0), s2)
