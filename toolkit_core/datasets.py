"""torchvision data sets for real use (MNIST, CIFAR-10), as tensors in [0, 1].

Nothing is downloaded unless you ask: with ``download=False`` (the default) a missing data set raises
:class:`FileNotFoundError` saying where the files were looked for and how to get them. The tests and
the embedded demos use :mod:`toolkit_core.data` (scikit-learn digits) instead.

Example::

    from torch.utils.data import DataLoader
    from toolkit_core.datasets import cifar10
    test = cifar10("~/data", train=False, download=True)      # TensorDataset: (10000, 3, 32, 32), labels
    loader = DataLoader(test, batch_size=256)
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["cifar10", "mnist"]


def _root(root: str | os.PathLike) -> str:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a directory path, got {type(root).__name__}")
    return os.path.expanduser(os.fspath(root))


def _open(cls, name: str, root: str, train: bool, download: bool):
    try:
        return cls(root, train=train, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
        if download:
            raise
        raise FileNotFoundError(
            f"{name} was not found under {root!r} ({exc}). Pass download=True to fetch it into that directory, "
            f"or point root at a directory that already holds torchvision's {name} files."
        ) from None


def mnist(root: str | os.PathLike, train: bool = True, download: bool = False) -> TensorDataset:
    """MNIST as a ``TensorDataset``: ``(N, 1, 28, 28)`` float32 images in [0, 1] and int64 labels.

    Files are read from (or, with ``download=True``, written to) ``root/MNIST/raw`` by torchvision.
    """
    from torchvision.datasets import MNIST

    ds = _open(MNIST, "MNIST", _root(root), train, download)
    x = ds.data.to(torch.float32).div_(255.0)[:, None]
    return TensorDataset(x.contiguous(), ds.targets.to(torch.long))


def cifar10(root: str | os.PathLike, train: bool = True, download: bool = False) -> TensorDataset:
    """CIFAR-10 as a ``TensorDataset``: ``(N, 3, 32, 32)`` float32 images in [0, 1] and int64 labels.

    Files are read from (or, with ``download=True``, written to) ``root/cifar-10-batches-py``.
    Normalization (per-channel mean/std) belongs inside the model, so attacks see [0, 1] inputs.
    """
    from torchvision.datasets import CIFAR10

    ds = _open(CIFAR10, "CIFAR-10", _root(root), train, download)
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    return TensorDataset(x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long))
