"""LMS-k data and the coordinate randomization test ("The Pitfalls of Simplicity Bias in Neural Networks",
Shah, Tamuly, Raghunathan, Jain, Netrapalli, NeurIPS 2020, arXiv:2006.07710).

Binary labels ``y in {0, 1}`` (sign ``s = 2y - 1``), inputs in ``[-1, 1]^d``; given ``y`` the coordinates
are independent:

* coordinate 0 is **linear**: ``x_0 ~ s * U[gamma, 1]``, so ``sign(x_0)`` predicts ``y`` with margin
  ``2 gamma``;
* coordinates ``1..d-1`` are **k-slab** (``k`` odd): ``[-1, 1]`` is cut into ``k`` slabs of width
  ``w = (2 - (k-1) * 2 gamma) / k`` separated by gaps of ``2 gamma``; slabs alternate between the classes,
  with class 1 at the middle slab;
  ``x_j`` is uniform in a slab of its class chosen uniformly.

Every coordinate alone predicts ``y`` perfectly, the linear one with the simplest (linear) rule, the
slab ones only with a piecewise rule of ``k`` pieces. Simplicity bias: a network trained on LMS-k
relies on the linear coordinate alone. The randomization test shows it: permuting coordinate 0 across
samples (``L``-randomized) drops accuracy to chance, permuting the slab coordinates
(``S``-randomized) leaves it unchanged.

Reading: the paper's Section 3 defines the blocks with a margin ``gamma`` between the classes; we use
the same margin for both blocks (``gamma = 0.1`` by default) and equal-width slabs; an optional random
rotation (the paper rotates the data in some experiments) is applied after sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor


def slab_edges(k: int, gamma: float) -> Tensor:
    """(k, 2) lower/upper edges of the k slabs in [-1, 1] separated by gaps of 2*gamma."""
    if k < 1 or k % 2 == 0:
        raise ValueError(f"k must be a positive odd number of slabs, got {k}")
    width = (2 - (k - 1) * 2 * gamma) / k
    if width <= 0:
        raise ValueError(f"gamma={gamma} leaves no room for {k} slabs in [-1, 1]; use gamma < {1 / (k - 1)}")
    lo = -1 + torch.arange(k, dtype=torch.float64) * (width + 2 * gamma)
    return torch.stack([lo, lo + width], 1)


def slab_classes(k: int) -> Tensor:
    """Class (0/1) of each slab: alternating, class 1 at the middle slab."""
    mid = k // 2
    return ((torch.arange(k) - mid).abs() % 2 == 0).long()


def lms(n: int, dim: int = 10, k: int = 5, gamma: float = 0.1, seed: int = 0,
        rotation: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``n`` samples of LMS-k in ``dim`` dimensions: ``(x float32 (n, dim), y long (n,))``, balanced classes."""
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (one linear and at least one slab coordinate), got {dim}")
    if not 0 < gamma < 1:
        raise ValueError(f"gamma must lie in (0, 1), got {gamma}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % 2
    s = (2 * y - 1).double()
    x = torch.empty(n, dim, dtype=torch.float64)
    x[:, 0] = s * (gamma + (1 - gamma) * torch.rand(n, generator=g, dtype=torch.float64))
    edges, cls = slab_edges(k, gamma), slab_classes(k)
    for c in (0, 1):
        slabs = torch.nonzero(cls == c)[:, 0]
        rows = torch.nonzero(y == c)[:, 0]
        pick = slabs[torch.randint(len(slabs), (len(rows), dim - 1), generator=g)]
        u = torch.rand(len(rows), dim - 1, generator=g, dtype=torch.float64)
        x[rows, 1:] = edges[pick, 0] + u * (edges[pick, 1] - edges[pick, 0])
    if rotation is not None:
        x = x @ rotation.double().T
    return x.float(), y


def random_rotation(dim: int, seed: int = 0) -> Tensor:
    """A random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def randomize(x: Tensor, coords: list[int] | slice, seed: int = 0) -> Tensor:
    """A copy of ``x`` whose columns ``coords`` are each permuted independently across the samples."""
    g = torch.Generator().manual_seed(seed)
    out = x.clone()
    cols = range(x.shape[1])[coords] if isinstance(coords, slice) else coords
    for j in cols:
        out[:, j] = x[torch.randperm(len(x), generator=g), j]
    return out


def randomization_test(model, x: Tensor, y: Tensor, seed: int = 0) -> dict[str, float]:
    """Accuracy of ``model`` on ``x``, on ``x`` with the linear coordinate permuted (``L``) and with the slab
    coordinates permuted (``S``). Reliance on the linear coordinate: ``acc_L`` near 0.5, ``acc_S`` near ``acc``.
    (Apply to unrotated data: the coordinates are the features.)"""
    with torch.no_grad():
        acc = lambda inp: float((model(inp).argmax(1) == y).float().mean())  # noqa: E731
        return {"accuracy": acc(x), "accuracy_L_randomized": acc(randomize(x, [0], seed)),
                "accuracy_S_randomized": acc(randomize(x, slice(1, None), seed))}
