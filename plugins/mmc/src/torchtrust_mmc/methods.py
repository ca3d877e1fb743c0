"""Minimum Manifold Coding (MMC): codes of training points from a shortest Hamiltonian path.

Operational definition (ours; the MMCGAN paper text was not available, see METHODS.md section 3).
Zheng, Sang & Xu, "MMCGAN: generative adversarial network with explicit manifold prior"
describe MMC as "the general case of the shortest Hamiltonian path problem" that
"pursues manifold with minimum Riemann volume". We implement:

1. ``path``: an approximately shortest open Hamiltonian path through the N training points (Euclidean,
   in data space or in the feature space passed to ``fit``), :func:`torchtrust_mmc.tsp.shortest_path`.
2. codes. ``dim = 1``: cumulative arc length along the path, ``t_0 = 0``,
   ``t_{i+1} = t_i + |x_{path[i+1]} - x_{path[i]}|``, standardized to mean 0 and variance 1.
   ``dim = d > 1``: the ``d`` eigenvectors with the smallest non-zero eigenvalues of the normalized
   Laplacian ``L = I - D^{-1/2} W D^{-1/2}`` of the graph whose edges are the path edges plus the
   symmetric ``knn``-nearest-neighbour edges, ``W_ij = exp(-|x_i - x_j|^2 / (2 s^2))`` with ``s`` the
   median edge length; each eigenvector standardized (sign fixed so that its largest-magnitude entry is
   positive).
3. ``sample(n)``: a uniformly random path edge ``(path[j], path[j+1])``, ``u ~ U(0, 1)``,
   ``z = (1 - u) c_{path[j]} + u c_{path[j+1]} + sigma * N(0, I)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from toolkit_core.methods import Prior

from . import knn as _knn_module  # noqa: F401  (declares the op torchtrust_mmc::knn)
from .tsp import _as_points, knn_graph, shortest_path


def training_matrix(X) -> Tensor:
    """``X`` (a tensor ``(N, ...)``, an array, a Dataset or a DataLoader) as a float ``(N, D)`` tensor.

    From a DataLoader or Dataset the first element of every batch/item is used.
    """
    from torch.utils.data import DataLoader, Dataset

    if isinstance(X, DataLoader):
        parts = [b[0] if isinstance(b, (tuple, list)) else b for b in X]
        if not parts:
            raise ValueError("the DataLoader is empty; fit needs at least 2 training points")
        X = torch.cat([torch.as_tensor(p) for p in parts])
    elif isinstance(X, Dataset) and not isinstance(X, Tensor):
        X = DataLoader(X, batch_size=1024, shuffle=False)
        return training_matrix(X)
    X = torch.as_tensor(X).detach().cpu().float()
    if X.dim() < 2:
        raise ValueError(
            f"X must have shape (N, ...) with one row per training point, got shape {tuple(X.shape)}; "
            "for scalar data use X[:, None]"
        )
    X = X.reshape(len(X), -1)
    if len(X) < 2:
        raise ValueError(f"a prior needs at least 2 training points, got {len(X)}")
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; remove or impute them before fitting the prior")
    return X


def _standardize(v: np.ndarray) -> np.ndarray:
    sd = v.std(axis=0)
    sd[sd == 0] = 1.0
    return (v - v.mean(axis=0)) / sd


def laplacian_codes(
    X: np.ndarray, path: np.ndarray, dim: int, knn: int = 10, nbr: np.ndarray | None = None
) -> np.ndarray:
    """``dim`` smallest non-trivial eigenvectors of the normalized Laplacian, each standardized.

    ``nbr``: precomputed neighbour lists ``(N, >= knn)`` (else computed with :func:`knn_graph`).
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    n = len(X)
    if dim > n - 2:
        raise ValueError(f"dim={dim} codes need at least dim + 2 = {dim + 2} training points, got {n}")
    nbr = knn_graph(X, min(knn, n - 1))[0] if nbr is None else nbr[:, :knn]
    rows = np.concatenate([path[:-1], np.repeat(np.arange(n), nbr.shape[1])])
    cols = np.concatenate([path[1:], nbr.ravel()])
    lengths = np.linalg.norm(X[rows] - X[cols], axis=1)
    s = float(np.median(lengths[lengths > 0])) if (lengths > 0).any() else 1.0
    w = np.exp(-(lengths**2) / (2 * s * s))
    W = sp.coo_matrix((w, (rows, cols)), shape=(n, n)).tocsr()
    W = W.maximum(W.T)  # symmetric; duplicates (path edge that is also a kNN edge) counted once
    deg = np.asarray(W.sum(axis=1)).ravel()
    dinv = 1.0 / np.sqrt(deg)
    A = sp.diags(dinv) @ W @ sp.diags(dinv)
    L = sp.identity(n, format="csr") - A
    if n <= 800:
        vals, vecs = np.linalg.eigh(L.toarray())
    else:
        v0 = np.sqrt(deg)
        vals, vecs = spla.eigsh(L.tocsc(), k=dim + 1, sigma=-1e-6, which="LM", v0=v0 / np.linalg.norm(v0))
        order = np.argsort(vals)
        vals, vecs = vals[order], vecs[:, order]
    codes = vecs[:, 1 : dim + 1].copy()
    for j in range(dim):  # deterministic sign
        if codes[np.argmax(np.abs(codes[:, j])), j] < 0:
            codes[:, j] *= -1
    return _standardize(codes)


class MMC(Prior):
    """Minimum Manifold Coding prior (operational definition, see the module docstring).

    ``dim``: code dimension (1: standardized arc length; > 1: Laplacian eigenvector codes);
    ``sigma``: std of the Gaussian noise added by ``sample``; ``knn``: neighbour-list size of the path
    solver and of the Laplacian graph; ``kicks``: iterated-local-search kicks of the solver (``-1``:
    its default ``min(20 N, 200000)``); ``seed``: solver seed.
    """

    name = "mmc"
    summary = "Minimum Manifold Coding: codes along a shortest Hamiltonian path through the data (MMCGAN)."
    citation = "G. Zheng, J. Sang, C. Xu: MMCGAN, explicit manifold learning as prior for GANs"
    kernels = ("torchtrust_mmc::knn",)

    def __init__(self, dim: int = 1, sigma: float = 0.0, knn: int = 10, kicks: int = -1, seed: int = 0):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if knn < 1:
            raise ValueError(f"knn must be >= 1, got {knn}")
        self.dim = dim
        self.sigma = float(sigma)
        self.knn = knn
        self.kicks = kicks
        self.seed = seed
        self.codes: Tensor | None = None
        self.path: Tensor | None = None

    @classmethod
    def contract_params(cls) -> dict:
        return {"kicks": 0}

    def fit(self, X, features=None) -> MMC:
        """Fit on training points ``X``; the path is computed on ``features`` (N, F) when given."""
        Xt = training_matrix(X)
        F = Xt if features is None else training_matrix(features)
        if len(F) != len(Xt):
            raise ValueError(f"features has {len(F)} rows but X has {len(Xt)}; give one feature row per point")
        pts = _as_points(F.double().numpy())
        n = len(pts)
        kicks = min(n, 20_000) if self.kicks < 0 else self.kicks
        path, nbr, _ = shortest_path(pts, k=self.knn, kicks=kicks, seed=self.seed, return_graph=True)
        if self.dim == 1:
            steps = np.linalg.norm(np.diff(pts[path], axis=0), axis=1)
            t = np.concatenate([[0.0], np.cumsum(steps)])
            codes = np.empty((n, 1))
            codes[path, 0] = _standardize(t[:, None])[:, 0]
        else:
            codes = laplacian_codes(pts, path, self.dim, self.knn, nbr)
        self.path = torch.as_tensor(path, dtype=torch.long)
        self.codes = torch.as_tensor(codes, dtype=torch.float32)
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` codes interpolated uniformly along random path edges (plus ``sigma`` noise)."""
        if self.codes is None or self.path is None:
            raise RuntimeError("call fit(X) before sample(n): the MMC prior samples along the fitted path")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        e = torch.randint(len(self.path) - 1, (n,), generator=generator)
        u = torch.rand(n, 1, generator=generator)
        a, b = self.codes[self.path[e]], self.codes[self.path[e + 1]]
        z = (1 - u) * a + u * b
        if self.sigma > 0:
            z = z + self.sigma * torch.randn(n, self.dim, generator=generator)
        return z

    def state_dict(self) -> dict:
        return {"codes": self.codes, "path": self.path}

    def load_state_dict(self, state: dict) -> None:
        self.codes, self.path = state["codes"], state["path"]
