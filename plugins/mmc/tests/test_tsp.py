"""The mmc path solver (shortest Hamiltonian path): exact on small sets, never worse than its start."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from torchtrust_mmc import tsp


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
