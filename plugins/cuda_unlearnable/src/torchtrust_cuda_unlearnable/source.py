"""The bundled digits made unlearnable with CUDA, as a torchtrust ``dataset`` method."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from toolkit_core.data import load_digits
from toolkit_core.methods import DataSource, Scale

from .filters import apply_filters, class_filters


class CUDAUnlearnableDigits(DataSource):
    """Digits whose *training* images are convolved with class-wise random filters (CUDA, arXiv:2303.04278);
    the test split stays clean, so a model's clean test accuracy shows how unlearnable the training set was."""

    name = "cuda_unlearnable"
    summary = "Training digits convolved with class-wise random filters (CUDA unlearnable data); clean test split."
    citation = "arXiv:2303.04278"

    def __init__(self, size: int = 16, kernel_size: int = 3, blur: float = 0.3, key: int = 0,
                 poison_fraction: float = 1.0):
        if not 0 <= poison_fraction <= 1:
            raise ValueError(f"poison_fraction must lie in [0, 1], got {poison_fraction}")
        self.filters = class_filters(10, kernel_size, blur, seed=key)  # validates kernel_size and blur
        self.size, self.kernel_size, self.blur, self.key = size, kernel_size, blur, key
        self.poison_fraction = poison_fraction
        self.input_shape, self.num_classes, self.value_range = (1, size, size), 10, (0.0, 1.0)

    def tensors(self, split: str = "train", seed: int = 0):
        """``(x, y)``: the poisoned training split, or the clean test split."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        x, y = load_digits(self.size, split, seed=seed).tensors
        if split == "test":
            return x, y
        g = torch.Generator().manual_seed(self.key)
        poisoned = torch.rand(len(y), generator=g) < self.poison_fraction
        x = x.clone()
        if poisoned.any():  # poison_fraction 0 (or a tiny one): nothing to filter
            x[poisoned] = apply_filters(x[poisoned], y[poisoned], self.filters)
        return x, y

    def loaders(self, batch_size: int = 256, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        train = DataLoader(TensorDataset(*self.tensors("train", seed)), batch_size, shuffle=True, generator=g)
        return train, DataLoader(TensorDataset(*self.tensors("test", seed)), batch_size)

    @classmethod
    def experiment_training(cls, scale: Scale) -> dict:
        """The digits CNN with Adam 3e-3, batch 64, 15 epochs (quick: 5), as in docs/results/seed-pool.md."""
        return {"epochs": 5 if scale.quick else 15, "lr": 3e-3, "optimizer": "adam", "batch_size": 64}

    def reference(self) -> CUDAUnlearnableDigits:
        """The same digits without the filters (``poison_fraction=0``): what the model reaches on clean data."""
        return CUDAUnlearnableDigits(size=self.size, kernel_size=self.kernel_size, blur=self.blur, key=self.key,
                                     poison_fraction=0.0)
