"""Tiny datasets written in the real on-disk formats, for tests and benchmarks (nothing is downloaded).

* :func:`write_cifar10` / :func:`write_cifar100`: the python pickles of ``cifar-10-python.tar.gz``
  (``data_batch_1..5``, ``test_batch``, ``batches.meta``; ``data`` is ``(N, 3072)`` uint8 in
  channel-major order, ``labels`` a list of ints);
* :func:`write_mnist`: the four idx files of MNIST / Fashion-MNIST under ``root/<Name>/raw``;
* :func:`write_imagefolder`: ``root/<split>/<class>/<i>.png``.

Images are learnable on purpose: class ``c`` is a noisy image whose mean brightness pattern depends
on ``c`` (a class-specific bright quadrant), so a tiny model reaches well above chance in one epoch.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

__all__ = ["images", "write_cifar10", "write_cifar100", "write_imagefolder", "write_mnist", "write_svhn"]


def images(n: int, side: int, channels: int, classes: int, seed: int,
           labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W, C)`` uint8 images and ``(N,)`` labels; class ``c`` lights up cell ``c`` of a grid.

    ``labels``: the classes to draw (default: ``n`` uniform draws).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n) if labels is None else np.asarray(labels)
    x = rng.normal(0.35, 0.12, size=(len(labels), side, side, channels))
    cells = int(np.ceil(np.sqrt(classes)))
    step = max(side // cells, 1)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), cells)
        x[i, r * step:(r + 1) * step, q * step:(q + 1) * step, :] += 0.45
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def _cifar(root: Path, folder: str, files: dict[str, int], label_key: str, meta_name: str, meta_key: str,
           classes: int, seed: int) -> Path:
    base = Path(root) / folder
    base.mkdir(parents=True, exist_ok=True)
    for k, (name, n) in enumerate(files.items()):
        x, y = images(n, 32, 3, classes, seed + k)
        entry = {"batch_label": name, label_key: [int(v) for v in y],
                 "data": x.transpose(0, 3, 1, 2).reshape(n, 3072), "filenames": [f"{i}.png" for i in range(n)]}
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
    with open(base / meta_name, "wb") as f:
        pickle.dump({meta_key: [f"class_{c}" for c in range(classes)]}, f)
    return base


def write_cifar10(root: str | Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's python format under ``root/cifar-10-batches-py``; ``n_train`` is split over 5 batches."""
    per = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    files = {f"data_batch_{i + 1}": per[i] for i in range(5)}
    files["test_batch"] = n_test
    return _cifar(Path(root), "cifar-10-batches-py", files, "labels", "batches.meta", "label_names", 10, seed)


def write_cifar100(root: str | Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-100's python format under ``root/cifar-100-python`` (fine labels, 100 classes)."""
    return _cifar(Path(root), "cifar-100-python", {"train": n_train, "test": n_test}, "fine_labels", "meta",
                  "fine_label_names", 100, seed)


def _idx(path: Path, array: np.ndarray) -> None:
    dims = array.shape
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, len(dims)))  # magic: unsigned byte data, ndim
        f.write(struct.pack(">" + "I" * len(dims), *dims))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root: str | Path, n_train: int = 60, n_test: int = 20, seed: int = 0, name: str = "MNIST") -> Path:
    """MNIST's four idx files under ``root/<name>/raw`` (``name="FashionMNIST"`` for Fashion-MNIST)."""
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = images(n, 28, 1, 10, s)
        _idx(raw / f"{prefix}-images-idx3-ubyte", x[..., 0])
        _idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return raw


def write_imagefolder(root: str | Path, per_class: int = 5, classes: int = 3, side: int = 40,
                      splits: tuple[str, ...] = ("train", "val"), seed: int = 0) -> Path:
    """PNG files ``root/<split>/class_<c>/<i>.png`` (RGB, ``side`` x ``side``)."""
    from PIL import Image

    root = Path(root)
    for k, split in enumerate(splits):
        x, y = images(per_class * classes, side, 3, classes, seed + k,
                      labels=np.repeat(np.arange(classes), per_class))  # exactly per_class images of each class
        for i, (img, c) in enumerate(zip(x, y)):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i}.png")
    return root


def write_svhn(root: str | Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> Path:
    """SVHN's cropped-digits ``.mat`` files (``X``: ``(32, 32, 3, N)`` uint8, ``y``: ``(N, 1)``, 10 for digit 0)."""
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = images(n, 32, 3, 10, s)
        savemat(root / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y)[:, None]})
    return root
