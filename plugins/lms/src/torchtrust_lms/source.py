"""The LMS-k data set as a torchtrust ``dataset`` method (see :mod:`torchtrust_lms.data`)."""

from __future__ import annotations

from torch.utils.data import DataLoader, TensorDataset

from toolkit_core.methods import DataSource, Scale

from .data import lms, random_rotation, randomization_test


class LMS(DataSource):
    """LMS-k (Shah et al. 2020, "The Pitfalls of Simplicity Bias in Neural Networks"): one linear
    coordinate ``x_0 ~ s U[gamma, 1]`` and ``dim - 1`` k-slab coordinates, binary labels, inputs in
    ``[-1, 1]^dim`` (``[-sqrt(dim), sqrt(dim)]`` when rotated). Train and test use different seeds."""

    name = "lms"
    summary = "Linear + k-slab synthetic data that probes simplicity bias (one linear, dim-1 k-slab coordinates)."
    citation = "arXiv:2006.07710"

    def __init__(self, k: int = 5, dim: int = 50, gamma: float = 0.1, train_size: int = 10000,
                 test_size: int = 2000, rotate: bool = False):
        if train_size < 1 or test_size < 1:
            raise ValueError(f"train_size and test_size must be >= 1, got {train_size} and {test_size}")
        lms(1, dim=dim, k=k, gamma=gamma)  # validates k, dim and gamma now, before any work
        self.k, self.dim, self.gamma, self.rotate = k, dim, gamma, rotate
        self.train_size, self.test_size = train_size, test_size
        self.input_shape, self.num_classes = (dim,), 2
        bound = float(dim) ** 0.5 if rotate else 1.0
        self.value_range = (-bound, bound)

    def tensors(self, split: str = "train", seed: int = 0):
        """``(x, y)`` of one split; the test split is drawn with a different seed than the train split."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rotation = random_rotation(self.dim, seed) if self.rotate else None
        n = self.train_size if split == "train" else self.test_size
        return lms(n, self.dim, self.k, self.gamma, seed=2 * seed + (split == "test"), rotation=rotation)

    def loaders(self, batch_size: int = 256, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        train = DataLoader(TensorDataset(*self.tensors("train", seed)), batch_size, shuffle=True, generator=g)
        return train, DataLoader(TensorDataset(*self.tensors("test", seed)), batch_size)

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict]:
        """LMS-5 in 50 dimensions (quick: 10 dimensions, 2000 training points)."""
        return [{"dim": 10, "train_size": 2000, "test_size": 1000}] if scale.quick else [{}]

    @classmethod
    def experiment_training(cls, scale: Scale) -> dict:
        """The paper's recipe at our scale: SGD (momentum 0.9) lr 0.1, batch 100; 20 epochs (quick: 8)."""
        return {"epochs": 8 if scale.quick else 20, "lr": 0.1, "optimizer": "sgd", "batch_size": 100}

    def experiment_model(self):
        """A ReLU MLP ``dim -> 100 -> 100 -> 2``."""
        from toolkit_core.models import MLP

        return MLP((self.dim, 100, 100, 2))

    def diagnostics(self, model, x, y) -> dict[str, float]:
        """The randomization test: accuracy with the linear coordinate (``L``) or the slab coordinates
        (``S``) permuted across samples (unrotated data only: the coordinates are the features)."""
        if self.rotate:
            return {}
        out = randomization_test(model, x, y)
        return {"accuracy_L_randomized": out["accuracy_L_randomized"],
                "accuracy_S_randomized": out["accuracy_S_randomized"]}
