"""Data that ships with the install: no downloads, ever.

* scikit-learn's handwritten digits (1,797 images, 8x8, 10 classes), optionally upsampled;
* the 2-D Gaussian mixtures of the PacGAN protocol (ring of 8, grid of 25);
* scikit-image's bundled photos (astronaut, chelsea, coffee) resized for ImageNet-sized models.

Images are float tensors in [0, 1]; normalization belongs inside the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

# --------------------------------------------------------------------------- digits


def load_digits(
    size: int = 16, split: str = "all", test_fraction: float = 0.25, seed: int = 0
) -> TensorDataset:
    """scikit-learn's digits as a ``TensorDataset`` of ``(N, 1, size, size)`` images in [0, 1].

    ``split``: ``"train"``, ``"test"`` or ``"all"``; the split is stratified and fixed by ``seed``.
    ``size``: 8 (native) or larger (bilinear upsampling, e.g. 16 or 28).
    """
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if size < 8:
        raise ValueError(f"size must be at least 8 (the native resolution), got {size}")
    bunch = _load()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    if split != "all":
        idx = np.arange(len(y))
        train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y.numpy())
        sel = torch.as_tensor(train if split == "train" else test)
        x, y = x[sel], y[sel]
    return TensorDataset(x.contiguous(), y)


def digits_loaders(
    size: int = 16, batch_size: int = 64, seed: int = 0, train_size: int | None = None
) -> tuple[DataLoader, DataLoader]:
    """(train, test) loaders over the digits; the train loader shuffles with a seeded generator."""
    train, test = load_digits(size, "train", seed=seed), load_digits(size, "test", seed=seed)
    if train_size is not None:
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(train), generator=g)[:train_size]
        train = TensorDataset(*(t[keep] for t in train.tensors))
    g = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=g),
        DataLoader(test, batch_size=256),
    )


# --------------------------------------------------------------------------- toy 2-D mixtures

RING_MODES = torch.tensor(
    [[math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)] for k in range(8)], dtype=torch.float32
)
GRID_MODES = torch.tensor([[i, j] for i in (-4, -2, 0, 2, 4) for j in (-4, -2, 0, 2, 4)], dtype=torch.float32)
RING_STD, GRID_STD = 0.01, 0.05


def _mixture(modes: torch.Tensor, std: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(modes), (n,), generator=g)
    return modes[labels] + std * torch.randn(n, 2, generator=g), labels


def ring8(n: int = 2500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """PacGAN ring: 8 Gaussians at angles 2*pi*k/8 on the unit circle, std 0.01. Returns (x, mode)."""
    return _mixture(RING_MODES, RING_STD, n, seed)


def grid25(n: int = 2500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """PacGAN grid: 25 Gaussians at {-4,-2,0,2,4}^2, std 0.05. Returns (x, mode)."""
    return _mixture(GRID_MODES, GRID_STD, n, seed)


TOY_MIXTURES = {"ring": (ring8, RING_MODES, RING_STD), "grid": (grid25, GRID_MODES, GRID_STD)}


# --------------------------------------------------------------------------- photos

PHOTO_NAMES = ("astronaut", "chelsea", "coffee")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_photos(size: int = 224, names: tuple[str, ...] = PHOTO_NAMES) -> torch.Tensor:
    """scikit-image's bundled photos as a ``(len(names), 3, size, size)`` tensor in [0, 1]."""
    import skimage.data

    images = []
    for name in names:
        if name not in PHOTO_NAMES:
            raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTO_NAMES)}")
        img = torch.tensor(getattr(skimage.data, name)(), dtype=torch.float32).permute(2, 0, 1) / 255.0
        side = min(img.shape[1:])  # centre crop to a square, then resize
        top, left = (img.shape[1] - side) // 2, (img.shape[2] - side) // 2
        img = img[:, top : top + side, left : left + side]
        images.append(F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True)[0])
    return torch.stack(images).clamp(0, 1)


# --------------------------------------------------------------------------- iteration


def iterate_batches(data, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches from a DataLoader, a Dataset, or a tuple ``(x, y)`` of tensors."""
    if isinstance(data, DataLoader):
        yield from ((b[0], b[1]) for b in data)
        return
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"x and y have different lengths ({len(x)} and {len(y)})")
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    if isinstance(data, torch.utils.data.Dataset):
        yield from ((b[0], b[1]) for b in DataLoader(data, batch_size=batch_size))
        return
    raise TypeError(f"data must be a DataLoader, a Dataset or a tuple (x, y) of tensors, got {type(data).__name__}")
