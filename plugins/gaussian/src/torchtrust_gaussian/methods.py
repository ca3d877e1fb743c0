"""The standard Gaussian prior of the original GAN (Goodfellow et al. 2014, arXiv:1406.2661)."""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit_core.methods import Prior


class Gaussian(Prior):
    """``z ~ N(0, I_dim)``. ``codes`` are i.i.d. draws (seeded by ``seed``), one per training point.

    The baseline prior: a plain GAN samples ``z`` from it and never uses ``codes`` (``pair_weight=0``).
    """

    name = "gaussian"
    summary = "Standard normal prior z ~ N(0, I) (the plain GAN baseline)."
    citation = "arXiv:1406.2661"
    pairing = False  # its codes are noise: a GAN with this prior is the plain GAN
    state_attributes = ("codes",)

    def __init__(self, dim: int = 2, seed: int = 0):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.seed = seed
        self.codes: Tensor | None = None

    def fit_points(self, X: Tensor) -> None:
        """Draw one code per training point (``X`` is only counted: the prior ignores the data)."""
        g = torch.Generator().manual_seed(self.seed)
        self.codes = torch.randn(len(X), self.dim, generator=g)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from ``N(0, I_dim)`` (torch's global RNG unless ``generator`` is given)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return torch.randn(n, self.dim, generator=generator)
