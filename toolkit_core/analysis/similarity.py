"""Similarity measures between two attribution maps (Adebayo et al. 2018, arXiv:1810.03292).

All measures compare *2-D* maps: an attribution of shape ``(C, H, W)`` is reduced to ``(H, W)`` by
summing over channels (signed), see :func:`to_2d`.

* :func:`ssim` -- structural similarity of the maps scaled to [0, 1] by min-max,
  ``SSIM(s(a), s(b))`` with ``s(m) = (m - min m) / (max m - min m)`` and ``data_range = 1``.
* :func:`ssim_sign_flip` -- ``max(SSIM(s(a), s(b)), SSIM(s(a), s(-b)))``: a map and its negative count
  as equally similar (a randomized layer may flip the sign of the whole map).
* :func:`spearman` -- Spearman rank correlation of the flattened maps, signed or of absolute values.
* :func:`hog_spearman` -- Spearman correlation of the histogram-of-oriented-gradients features of the
  [0, 1]-scaled maps (captures edge structure, insensitive to small shifts).

We use scikit-image's ``structural_similarity`` and ``hog`` and SciPy's ``spearmanr``: they are the
reference implementations the original sanity-check code used, already core dependencies of
torchtrust, and re-implementing them would only add room for disagreement with published numbers.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["to_2d", "scale01", "ssim", "ssim_sign_flip", "spearman", "hog_spearman", "compare_maps", "METRICS"]

METRICS = ("ssim", "ssim_flip", "spearman_abs", "spearman", "hog_spearman")


def to_2d(m: Any) -> np.ndarray:
    """A single map as a float64 ``(H, W)`` array: ``(C, H, W)`` is summed over channels; ``(H, W)`` kept.

    Other shapes (e.g. a 1-D feature attribution) are reshaped to a single row ``(1, D)``.
    """
    if isinstance(m, torch.Tensor):
        m = m.detach().cpu().double().numpy()
    m = np.asarray(m, dtype=np.float64)
    if m.ndim == 3:
        return m.sum(0)
    if m.ndim == 2:
        return m
    return m.reshape(1, -1)


def scale01(m: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1]; a constant map becomes all zeros."""
    lo, hi = float(m.min()), float(m.max())
    if not math.isfinite(lo) or not math.isfinite(hi):
        raise ValueError("attribution map contains NaN or inf values")
    if hi - lo <= 1e-12 * max(1.0, abs(hi), abs(lo)):
        return np.zeros_like(m)
    return (m - lo) / (hi - lo)


def _win(shape: tuple[int, ...]) -> int:
    side = min(shape)
    if side >= 7:
        return 7
    return max(side if side % 2 == 1 else side - 1, 1)


def ssim(a: Any, b: Any) -> float:
    """SSIM (Wang et al. 2004) of the [0, 1]-scaled 2-D maps ``a``, ``b`` (7x7 uniform window; smaller if tiny).

    ``SSIM = mean over windows of (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))``
    with ``C1 = (0.01)^2``, ``C2 = (0.03)^2`` (data range 1). Identical maps give exactly 1.
    """
    from skimage.metrics import structural_similarity

    a2, b2 = scale01(to_2d(a)), scale01(to_2d(b))
    if a2.shape != b2.shape:
        raise ValueError(f"maps must have the same shape, got {a2.shape} and {b2.shape}")
    win = _win(a2.shape)
    if win < 3:
        # too small for a window: fall back to a single global SSIM window
        return float(_global_ssim(a2, b2))
    return float(structural_similarity(a2, b2, data_range=1.0, win_size=win))


def _global_ssim(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = 0.01**2, 0.03**2
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(), b.var()
    cov = ((a - ma) * (b - mb)).mean()
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))


def ssim_sign_flip(a: Any, b: Any) -> float:
    """``max(SSIM(a, b), SSIM(a, -b))``: similarity up to a global sign flip of ``b``."""
    b2 = to_2d(b)
    return max(ssim(a, b2), ssim(a, -b2))


def _spearman(u: np.ndarray, v: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if u.size < 2 or np.ptp(u) == 0 or np.ptp(v) == 0:
        return float("nan")  # rank correlation undefined for a constant map
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = spearmanr(u, v).statistic
    return float(r)


def spearman(a: Any, b: Any, absolute: bool = False) -> float:
    """Spearman rank correlation of the flattened 2-D maps (of ``|a|``, ``|b|`` when ``absolute``).

    NaN when either map is constant (rank correlation is undefined there).
    """
    a2, b2 = to_2d(a), to_2d(b)
    if a2.shape != b2.shape:
        raise ValueError(f"maps must have the same shape, got {a2.shape} and {b2.shape}")
    if absolute:
        a2, b2 = np.abs(a2), np.abs(b2)
    return _spearman(a2.ravel(), b2.ravel())


def _hog(m: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    side = min(m.shape)
    cell = max(2, min(8, side // 4))
    return hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2), feature_vector=True)


def hog_spearman(a: Any, b: Any) -> float:
    """Spearman correlation of the HOG descriptors (Dalal & Triggs 2005) of the [0, 1]-scaled maps.

    Cells of ``min(8, side // 4)`` pixels, 2x2 blocks, 9 orientations. NaN for maps smaller than 8x8.
    """
    a2, b2 = scale01(to_2d(a)), scale01(to_2d(b))
    if a2.shape != b2.shape:
        raise ValueError(f"maps must have the same shape, got {a2.shape} and {b2.shape}")
    if min(a2.shape) < 8:
        return float("nan")
    return _spearman(_hog(a2), _hog(b2))


def compare_maps(a: Any, b: Any) -> dict[str, float]:
    """All measures of :data:`METRICS` between map ``a`` (reference) and map ``b``."""
    return {
        "ssim": ssim(a, b),
        "ssim_flip": ssim_sign_flip(a, b),
        "spearman_abs": spearman(a, b, absolute=True),
        "spearman": spearman(a, b),
        "hog_spearman": hog_spearman(a, b),
    }
