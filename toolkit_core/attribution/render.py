"""Render an attribution map as a PNG heatmap (optionally overlaid on the input image)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

__all__ = ["render_heatmap", "heatmap_array"]


def _to_2d(t: torch.Tensor | np.ndarray) -> np.ndarray:
    a = t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=float)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"render one sample at a time: got a batch of {a.shape[0]} maps (index it first)")
        a = a[0]
    if a.ndim == 3:
        a = a.sum(0)  # sum over channels (relevance is additive)
    if a.ndim != 2:
        raise ValueError(f"expected a (H, W), (C, H, W) or (1, C, H, W) map, got shape {a.shape}")
    return a


def heatmap_array(attribution, image=None, cmap: str | None = None, alpha: float = 0.6) -> np.ndarray:
    """RGB uint8 array: a diverging colormap (``bwr``, centred at 0, symmetric range) for signed maps,
    a sequential one (``hot``) for non-negative maps; blended over ``image`` (C, H, W in [0, 1]) if given."""
    import matplotlib

    a = _to_2d(attribution)
    if not np.isfinite(a).all():
        raise ValueError("the attribution contains NaN or inf values")
    signed = (a < 0).any()
    if signed:
        m = np.abs(a).max() or 1.0
        norm = (a / m + 1) / 2
        cmap = cmap or "bwr"
    else:
        m = a.max() or 1.0
        norm = a / m
        cmap = cmap or "hot"
    rgb = matplotlib.colormaps[cmap](norm)[..., :3]
    if image is not None:
        img = image.detach().cpu().double().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, float)
        if img.ndim == 4:
            img = img[0]
        if img.ndim == 3 and img.shape[0] in (1, 3):
            img = np.moveaxis(img, 0, -1)
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[:2] != rgb.shape[:2]:
            raise ValueError(f"image size {img.shape[:2]} differs from the attribution size {rgb.shape[:2]}")
        gray = np.clip(img, 0, 1).mean(-1, keepdims=True)
        weight = alpha * np.clip(np.abs(norm * 2 - 1) if signed else norm, 0, 1)[..., None]
        rgb = (1 - weight) * gray + weight * rgb
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def render_heatmap(attribution, path: str | Path | None = None, image=None, cmap: str | None = None,
                   alpha: float = 0.6, scale: int = 1) -> bytes:
    """Render one attribution map as PNG; write it to ``path`` if given; return the PNG bytes.

    ``attribution``: (H, W), (C, H, W) or (1, C, H, W); channels are summed. Signed maps use a
    diverging colormap centred at zero (red positive, blue negative); ``image`` (the input, in
    [0, 1]) gives an overlay: the map is blended over the grey-scale image by its magnitude.
    ``scale``: integer upsampling factor (nearest neighbour) for small inputs.
    """
    import matplotlib.pyplot as plt

    rgb = heatmap_array(attribution, image=image, cmap=cmap, alpha=alpha)
    if scale > 1:
        rgb = rgb.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    plt.imsave(buf, rgb, format="png")
    data = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data
