"""The user's data, named in a config: ``[data]`` -> streaming DataLoaders of images in [0, 1].

``dataset`` is ``"digits"`` (bundled, the default), a torchvision dataset by name (``cifar10``,
``cifar100``, ``mnist``, ``fashion_mnist``, ``svhn``), or ``"imagefolder"`` (``imagenet`` is an
alias: ``root/train/<class>/*.png|jpg`` and ``root/val/<class>/...``, the layout of ImageNet and
Imagenette). Files are read from ``root``; ``download = true`` lets torchvision fetch them there,
otherwise (the default) a missing dataset raises :class:`DatasetNotFoundError` saying where it was
looked for and how to get it.

Images come out as float tensors in [0, 1] (``ToTensor``), resized (``resize``: shorter side) and
center-cropped (``crop``) when asked, with gray images repeated to 3 channels when the model takes
3 (``channels``). Nothing converts the dataset to one tensor: a DataLoader decodes batch by batch.

``train_subset`` / ``test_subset`` take the first N examples (``subset = "first"``) or a seeded
random N (``subset = "random"``, ``subset_seed``). For data-parallel evaluation,
:func:`eval_loader` gives each rank whole batches ``i`` with ``i % world_size == rank``, so every
batch holds the same examples as in one process (results are then put back in dataset order).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..errors import TorchtrustError

__all__ = ["DATASETS", "DataSpec", "DatasetNotFoundError", "ShardedBatches", "eval_loader", "load_split",
           "train_loader"]

#: name -> (torchvision class, channels, side, classes, how to get it)
DATASETS: dict[str, tuple[str, int, int, int, str]] = {
    "cifar10": ("CIFAR10", 3, 32, 10, "root/cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta), "
                "the python version from the CIFAR page (cifar-10-python.tar.gz) unpacked in root"),
    "cifar100": ("CIFAR100", 3, 32, 100, "root/cifar-100-python/ (train, test, meta), cifar-100-python.tar.gz "
                 "unpacked in root"),
    "mnist": ("MNIST", 1, 28, 10, "root/MNIST/raw/ with the four idx files (train-images-idx3-ubyte, "
              "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)"),
    "fashion_mnist": ("FashionMNIST", 1, 28, 10, "root/FashionMNIST/raw/ with the four idx files"),
    "svhn": ("SVHN", 3, 32, 10, "root/train_32x32.mat and root/test_32x32.mat (the cropped-digits format)"),
}
FOLDER_NAMES = ("imagefolder", "imagenet")
SPLITS = ("train", "test")


class DatasetNotFoundError(TorchtrustError, FileNotFoundError):
    """The dataset is not under ``root`` (and ``download`` is off)."""


@dataclasses.dataclass
class DataSpec:
    """What ``[data]`` says about a user dataset (the digits keep their own settings)."""

    dataset: str = "digits"
    root: str = "data"
    download: bool = False
    train_split: str = "train"
    test_split: str = "test"
    train_subset: int = 0
    test_subset: int = 0
    subset: str = "first"
    subset_seed: int = 0
    batch_size: int = 128
    num_workers: int = 0
    resize: int = 0
    crop: int = 0
    channels: int = 0

    @property
    def label(self) -> str:
        name = f"{self.dataset} ({self.root})" if self.dataset in FOLDER_NAMES else self.dataset
        return name

    def check(self) -> list[str]:
        problems = []
        if self.dataset != "digits" and self.dataset not in DATASETS and self.dataset not in FOLDER_NAMES:
            problems.append(f"data.dataset {self.dataset!r} is not known; valid: digits, "
                            f"{', '.join([*DATASETS, *FOLDER_NAMES])}")
        if self.subset not in ("first", "random"):
            problems.append(f"data.subset must be 'first' or 'random', got {self.subset!r}")
        for key in ("train_subset", "test_subset", "num_workers", "resize", "crop", "channels"):
            if getattr(self, key) < 0:
                problems.append(f"data.{key} must be >= 0, got {getattr(self, key)}")
        if self.batch_size < 1:
            problems.append(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.channels not in (0, 1, 3):
            problems.append(f"data.channels must be 0 (as stored), 1 or 3, got {self.channels}")
        return problems


class _Channels:
    """Repeat a 1-channel image to 3 channels (or average 3 to 1)."""

    def __init__(self, channels: int):
        self.channels = channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 3 and x.shape[0] == 1:
            return x.expand(3, *x.shape[1:]).contiguous()
        if self.channels == 1 and x.shape[0] == 3:
            return x.mean(0, keepdim=True)
        return x


def _transform(spec: DataSpec):
    from torchvision import transforms as T

    steps: list[Any] = []
    if spec.resize:
        steps.append(T.Resize(spec.resize, antialias=True))
    if spec.crop:
        steps.append(T.CenterCrop(spec.crop))
    steps.append(T.ToTensor())  # uint8 HWC / PIL -> float CHW in [0, 1]
    if spec.channels:
        steps.append(_Channels(spec.channels))
    return T.Compose(steps)


def _not_found(spec: DataSpec, split: str, detail: str) -> DatasetNotFoundError:
    root = os.path.abspath(os.path.expanduser(spec.root))
    if spec.dataset in FOLDER_NAMES:
        how = (f"an ImageFolder: {root}/{split}/<class name>/<image files> (or {root}/<class name>/... for one "
               "split); class folders are sorted by name to give the labels")
    else:
        how = (f"{DATASETS[spec.dataset][4]}; or set download = true in [data] to let torchvision fetch it into "
               f"{root}")
    return DatasetNotFoundError(f"{spec.dataset} ({split} split) was not found under {root!r}: {detail}. "
                                f"Expected {how}.")


def _folder_root(spec: DataSpec, split: str) -> Path:
    root = Path(spec.root).expanduser()
    aliases = {"test": ("test", "val", "validation"), "train": ("train",)}.get(split, (split,))
    for name in aliases:
        if (root / name).is_dir():
            return root / name
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        return root  # one split only: the class folders are directly under root
    raise _not_found(spec, split, "no such directory" if not root.is_dir() else "no class folders in it")


def _present_only(cls):
    """``cls`` checking that its files exist instead of their published checksums.

    torchvision's CIFAR and SVHN readers refuse files whose MD5 differs from the published archive,
    which also refuses a hand-made subset in the same format; the format itself is still checked
    when the files are read.
    """
    attrs: dict[str, Any] = {}
    for name in ("train_list", "test_list"):
        if hasattr(cls, name):
            attrs[name] = [[f, None] for f, _ in getattr(cls, name)]
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {k: [v[0], v[1], None] for k, v in cls.split_list.items()}
    return type(cls.__name__, (cls,), attrs)


def load_split(spec: DataSpec, split: str) -> Dataset:
    """The ``split`` (``"train"`` or ``"test"``, or a dataset's own name like SVHN's ``"extra"``) as a Dataset.

    Items are ``(image in [0, 1] of shape (C, H, W), int label)``; the subset of the spec is applied.
    """
    import torchvision.datasets as tvd

    transform = _transform(spec)
    if spec.dataset in FOLDER_NAMES:
        ds: Dataset = tvd.ImageFolder(str(_folder_root(spec, split)), transform=transform)
    else:
        cls = _present_only(getattr(tvd, DATASETS[spec.dataset][0]))
        root = os.path.expanduser(spec.root)
        kwargs = {"split": split} if spec.dataset == "svhn" else {"train": split == "train"}
        try:
            ds = cls(root, transform=transform, download=spec.download, **kwargs)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            if spec.download:
                raise
            raise _not_found(spec, split, str(exc).splitlines()[0]) from None
    n = spec.train_subset if split == "train" else spec.test_subset
    return subset(ds, n, spec.subset, spec.subset_seed)


def subset(ds: Dataset, n: int, how: str = "first", seed: int = 0) -> Dataset:
    """The first ``n`` items, or ``n`` items drawn without replacement with ``seed`` (kept in dataset order)."""
    total = len(ds)  # type: ignore[arg-type]
    if not n or n >= total:
        return ds
    if how == "first":
        return Subset(ds, range(n))
    g = torch.Generator().manual_seed(seed)
    return Subset(ds, torch.randperm(total, generator=g)[:n].sort().values.tolist())


def train_loader(ds: Dataset, spec: DataSpec, seed: int) -> DataLoader:
    """A shuffling loader (seeded generator) over ``ds``; ``fit`` re-shards it under DDP."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=spec.batch_size, shuffle=True, generator=g, num_workers=spec.num_workers,
                      pin_memory=torch.cuda.is_available())


class ShardedBatches(Sampler[list[int]]):
    """Batches ``[i*B, (i+1)*B)`` of ``range(n)`` for the ``i`` with ``i % world_size == rank``."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size

    def batch_ids(self) -> range:
        return range(self.rank, (self.n + self.batch_size - 1) // self.batch_size, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for i in self.batch_ids():
            yield list(range(i * self.batch_size, min((i + 1) * self.batch_size, self.n)))

    def __len__(self) -> int:
        return len(self.batch_ids())

    def indices(self) -> list[int]:
        """The dataset indices this rank sees, in the order it sees them."""
        return [j for batch in self for j in batch]


def eval_loader(ds: Dataset, batch_size: int, rank: int = 0, world_size: int = 1,
                num_workers: int = 0) -> DataLoader:
    """An in-order loader over this rank's batches (see :class:`ShardedBatches`); ``.batch_sampler`` holds them."""
    sampler = ShardedBatches(len(ds), batch_size, rank, world_size)  # type: ignore[arg-type]
    return DataLoader(ds, batch_sampler=sampler, num_workers=num_workers, pin_memory=torch.cuda.is_available())


def first_items(ds: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` items of ``ds`` stacked: ``(x, y)`` (for attribution samples and figures)."""
    items = [ds[i] for i in range(min(n, len(ds)))]  # type: ignore[arg-type]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def num_classes(ds: Dataset) -> int | None:
    """The number of classes a torchvision dataset declares (``classes``), else ``None``."""
    base = ds
    while isinstance(base, Subset):
        base = base.dataset
    classes: Sequence[Any] | None = getattr(base, "classes", None)
    return len(classes) if classes else None
