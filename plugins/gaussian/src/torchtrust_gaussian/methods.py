"""The standard Gaussian prior of the original GAN (Goodfellow et al. 2014, arXiv:1406.2661)."""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit_core.methods import Prior


def _n_points(X) -> int:
    from torch.utils.data import DataLoader

    if isinstance(X, DataLoader):
        n = 0
        for b in X:
            n += len(b[0] if isinstance(b, (tuple, list)) else b)
        return n
    if not hasattr(X, "__len__"):
        raise TypeError(f"X must be a tensor (N, ...), a Dataset or a DataLoader, got {type(X).__name__}")
    if isinstance(X, Tensor) and X.dim() == 0:
        raise ValueError("X must have shape (N, ...) with one row per training point, got a scalar")
    return len(X)


class Gaussian(Prior):
    """``z ~ N(0, I_dim)``. ``codes`` are i.i.d. draws (seeded by ``seed``), one per training point.

    The baseline prior: a plain GAN samples ``z`` from it and never uses ``codes`` (``pair_weight=0``).
    """

    name = "gaussian"
    summary = "Standard normal prior z ~ N(0, I) (the plain GAN baseline)."
    citation = "arXiv:1406.2661"

    def __init__(self, dim: int = 2, seed: int = 0):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.seed = seed
        self.codes: Tensor | None = None

    def fit(self, X) -> Gaussian:
        """Draw one code per training point (``X`` is only counted: the prior ignores the data)."""
        n = _n_points(X)
        if n < 1:
            raise ValueError("X is empty; fit needs at least one training point")
        if isinstance(X, Tensor) and X.is_floating_point() and not torch.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values; remove or impute them before fitting the prior")
        g = torch.Generator().manual_seed(self.seed)
        self.codes = torch.randn(n, self.dim, generator=g)
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from ``N(0, I_dim)`` (torch's global RNG unless ``generator`` is given)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return torch.randn(n, self.dim, generator=generator)

    def state_dict(self) -> dict:
        return {"codes": self.codes}

    def load_state_dict(self, state: dict) -> None:
        self.codes = state["codes"]
