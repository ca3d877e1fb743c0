"""Class-wise convolution filters that make a training set unlearnable ("CUDA: Convolution-based Unlearnable
Datasets", Sadasivan, Soltanolkotabi, Feizi, CVPR 2023, arXiv:2303.04278).

Each class ``c`` gets a private ``k x k`` filter ``H_c``: entries drawn from ``U(0, p_b)`` (the *blur
parameter*), one entry at a random position set to ``1`` (so each class also gets its own small
shift), the same filter for every colour channel, no bias. Every training image ``x`` of class ``c`` is
replaced by

    x' = (H_c * x) / max(H_c * x)          (zero padding, "same" size; * is the 2-D cross-correlation of torch conv2d)

so it stays in ``[0, 1]``; test images are left clean. A network trained on ``{(x', y)}`` can learn the
filter-label relation instead of the image content, and then fails on clean test images.

Reading: the parameters (``k = 3``, ``p_b = 0.3``, position of the 1 at random, per-image max
normalization, zero padding) follow the authors' public reference script for CIFAR; the abstract alone
does not fix them. The filters are seeded (the "private key").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_filters(num_classes: int, kernel_size: int = 3, blur: float = 0.3, seed: int = 0) -> Tensor:
    """(num_classes, k, k) filters: ``U(0, blur)`` entries and one entry set to 1 at a random position."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if not blur >= 0:
        raise ValueError(f"blur must be >= 0, got {blur}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    g = torch.Generator().manual_seed(seed)
    w = blur * torch.rand(num_classes, kernel_size, kernel_size, generator=g, dtype=torch.float64)
    pos = torch.randint(kernel_size, (num_classes, 2), generator=g)
    w[torch.arange(num_classes), pos[:, 0], pos[:, 1]] = 1.0
    return w


def apply_filters(x: Tensor, y: Tensor, filters: Tensor) -> Tensor:
    """``x'`` = each image convolved with its class's filter, divided by its maximum (a new tensor)."""
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    if y.shape != x.shape[:1] or y.min() < 0 or y.max() >= len(filters):
        raise ValueError(f"y must hold one class index in 0..{len(filters) - 1} per image")
    k = filters.shape[-1]
    w = filters.to(x.dtype)[y]  # (B, k, k): one filter per image, shared by its channels
    b, c, h, wd = x.shape
    # one grouped convolution over the whole batch: group i = image i's channels with its own filter
    out = F.conv2d(x.reshape(1, b * c, h, wd), w.repeat_interleave(c, 0)[:, None], padding=k // 2, groups=b * c)
    out = out.reshape(b, c, h, wd)
    return out / out.amax((1, 2, 3), keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
