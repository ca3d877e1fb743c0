"""The mmc path solver and the gaussian / mmc priors, with numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchtrust_mmc import tsp

import toolkit_core as tt


def _rand(n, d=2, seed=0):
    return np.random.default_rng(seed).random((n, d))


def test_held_karp_equals_brute_force():
    X = _rand(7, seed=3)
    best = min(tsp.path_length(X, p) for p in itertools.permutations(range(7)))
    assert tsp.path_length(X, tsp.held_karp_path(X)) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("n", [8, 9, 10, 11, 12])
def test_heuristic_matches_held_karp(n):
    X = _rand(n, seed=100 + n)
    path = tsp.shortest_path(X, exact_below=0, seed=n)  # force the heuristic
    assert sorted(path.tolist()) == list(range(n))
    assert tsp.path_length(X, path) == pytest.approx(tsp.path_length(X, tsp.held_karp_path(X)), abs=1e-9)


@pytest.mark.parametrize("n,d,ratio", [(500, 2, 0.3), (300, 12, 0.7)])
def test_solver_returns_a_permutation_and_beats_its_start(n, d, ratio):
    X = _rand(n, d, seed=1)
    path = tsp.shortest_path(X, kicks=200)
    assert sorted(path.tolist()) == list(range(n))
    # far shorter than a random order; never longer than the plain local optimum it starts from
    assert tsp.path_length(X, path) < ratio * tsp.path_length(X, np.random.default_rng(0).permutation(n))
    assert tsp.path_length(X, path) <= tsp.path_length(X, tsp.shortest_path(X, kicks=0)) + 1e-9


def test_two_opt_never_lengthens_a_path():
    X = _rand(400, seed=2)
    for seed in range(3):
        start = np.random.default_rng(seed).permutation(400)
        for or_opt in (False, True):
            out = tsp.improve_path(X, start, or_opt=or_opt)
            assert sorted(out.tolist()) == list(range(400))
            assert tsp.path_length(X, out) <= tsp.path_length(X, start) + 1e-9
            again = tsp.improve_path(X, out, or_opt=or_opt)  # don't-look bits: a 2nd pass may still gain
            assert tsp.path_length(X, again) <= tsp.path_length(X, out) + 1e-9


def test_knn_graph_matches_brute_force():
    for d in (2, 20):  # cKDTree path and the blocked kernel path
        X = _rand(200, d, seed=d)
        idx, dist = tsp.knn_graph(X, 6)
        D = np.linalg.norm(X[:, None] - X[None], axis=-1)
        np.fill_diagonal(D, np.inf)
        np.testing.assert_array_equal(idx, np.argsort(D, axis=1)[:, :6])
        np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :6], rtol=1e-5)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((1, 2)), "at least 2"),
    (np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]), "NaN"),
    (np.zeros(5), "shape"),
])
def test_solver_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        tsp.shortest_path(bad)


@pytest.mark.parametrize("dim", [1, 2])
def test_mmc_codes_standardized_and_samples_in_range(dim):
    x = torch.tensor(_rand(300, 3, seed=5), dtype=torch.float32)
    prior = tt.create("mmc", dim=dim, kicks=50).fit(x)
    assert prior.raw_codes.shape == (300, dim) and prior.dim == 14 * dim and prior.codes.shape == (300, 14 * dim)
    assert sorted(prior.path.tolist()) == list(range(300))
    np.testing.assert_allclose(prior.raw_codes.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(prior.raw_codes.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    z = prior.sample_raw(5000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (5000, dim)
    lo, hi = prior.raw_codes.min(0).values, prior.raw_codes.max(0).values
    assert (z >= lo - 1e-6).all() and (z <= hi + 1e-6).all()
    # the generator's input: [sin 2^k c, cos 2^k c], k = 0..6, per code dimension, evaluated directly
    c = prior.raw_codes.double()
    want = torch.cat([torch.cat([torch.sin(2.0**k * c[:, j : j + 1]) for k in range(7)]
                                + [torch.cos(2.0**k * c[:, j : j + 1]) for k in range(7)], 1) for j in range(dim)], 1)
    torch.testing.assert_close(prior.codes.double(), want, atol=1e-5, rtol=0)
    zz = prior.sample(7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(zz, prior.embed(prior.sample_raw(7, generator=torch.Generator().manual_seed(1))))


def test_mmc_1d_code_is_arc_length():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [2.0, 0.0]])  # collinear: path 0,2,3,1
    prior = tt.create("mmc", dim=1, embedding="none").fit(x)
    t = torch.tensor([0.0, 3.0, 1.0, 2.0])  # arc length of each point along the path
    expect = (t - t.mean()) / t.std(unbiased=False)
    assert torch.allclose(prior.codes[:, 0], expect, atol=1e-6) or torch.allclose(prior.codes[:, 0], -expect, atol=1e-6)
    assert prior.dim == 1 and torch.equal(prior.codes, prior.raw_codes)


def test_mmc_sample_interpolates_a_path_edge():
    x = torch.tensor(_rand(50, 2, seed=7), dtype=torch.float32)
    prior = tt.create("mmc", dim=1, kicks=0, embedding="none", tear=0.0).fit(x)
    assert not prior.tears.any()
    g = torch.Generator().manual_seed(1)
    e = torch.randint(49, (4,), generator=g)
    u = torch.rand(4, 1, generator=g)
    c = prior.codes[prior.path]
    expect = (1 - u) * c[e] + u * c[e + 1]
    assert torch.allclose(prior.sample(4, generator=torch.Generator().manual_seed(1)), expect)


def test_mmc_never_samples_across_a_tear_and_shrinks_it():
    """Two tight clusters 10 apart: the path crosses once; that edge is the only tear."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([0.01 * torch.randn(40, 2, generator=g), 10 + 0.01 * torch.randn(40, 2, generator=g)])
    prior = tt.create("mmc", dim=1, kicks=0, embedding="none").fit(x)
    assert int(prior.tears.sum()) == 1
    raw = prior.raw_codes[:, 0]
    a, b = raw[:40], raw[40:]
    lo, hi = (a.max(), b.min()) if a.max() < b.min() else (b.max(), a.min())  # the gap between the clusters
    z = prior.sample_raw(20000, generator=torch.Generator().manual_seed(1))[:, 0]
    assert not ((z > lo + 1e-6) & (z < hi - 1e-6)).any()
    assert hi - lo > 1.5  # the jump takes most of the (standardized) arc length ...
    shrunk = tt.create("mmc", dim=1, kicks=0, embedding="none", shrink_tears=True).fit(x)
    assert torch.equal(shrunk.path, prior.path)
    pts = x[shrunk.path].double()
    steps = (pts[1:] - pts[:-1]).norm(dim=1)
    steps = torch.where(torch.as_tensor(shrunk.tears), steps.median(), steps)  # ... unless shrunk to a median step
    t = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])
    want = torch.empty(80, dtype=torch.float64)
    want[shrunk.path] = (t - t.mean()) / t.std(unbiased=False)
    torch.testing.assert_close(shrunk.raw_codes[:, 0].double(), want, atol=1e-5, rtol=0)


def test_mmc_bad_input():
    prior = tt.create("mmc")
    with pytest.raises(ValueError, match="at least 2"):
        prior.fit(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="NaN"):
        prior.fit(torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [2.0, 2.0]]))
    with pytest.raises(ValueError, match="shape"):
        prior.fit(torch.zeros(5))
    with pytest.raises(RuntimeError, match="fit"):
        tt.create("mmc").sample(3)
    with pytest.raises(ValueError, match="dim"):
        tt.create("mmc", dim=0)


def test_priors_accept_a_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.tensor(_rand(40, 2, seed=9), dtype=torch.float32)
    loader = DataLoader(TensorDataset(x, torch.zeros(40)), batch_size=16)
    a = tt.create("mmc", kicks=0).fit(loader)
    b = tt.create("mmc", kicks=0).fit(x)
    assert torch.equal(a.codes, b.codes)
    g = tt.create("gaussian", dim=3).fit(loader)
    assert g.codes.shape == (40, 3)


def test_gaussian_prior_moments():
    prior = tt.create("gaussian", dim=3, seed=1).fit(torch.zeros(10, 2))
    assert torch.equal(prior.codes, torch.randn(10, 3, generator=torch.Generator().manual_seed(1)))
    z = prior.sample(20000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (20000, 3)
    assert z.mean(0).abs().max() < 0.03 and (z.std(0) - 1).abs().max() < 0.03
