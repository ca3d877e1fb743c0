"""What the core gives every prior: ``Prior.fit`` converts the data once (tensor, array, Dataset or
DataLoader; checked), and ``state_dict`` / ``load_state_dict`` from ``state_attributes``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import toolkit_core as tt
from toolkit_core.generative.points import training_points
from toolkit_core.methods import Prior


def _rand(n, d=2, seed=0):
    return np.random.default_rng(seed).random((n, d))


def test_priors_accept_a_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.tensor(_rand(40, 2, seed=9), dtype=torch.float32)
    loader = DataLoader(TensorDataset(x, torch.zeros(40)), batch_size=16)
    a = tt.create("mmc", kicks=0).fit(loader)
    b = tt.create("mmc", kicks=0).fit(x)
    assert torch.equal(a.codes, b.codes)
    g = tt.create("gaussian", dim=3).fit(loader)
    assert g.codes.shape == (40, 3)


class _Counting(Prior):
    name = "counting"
    summary = "Records what fit_points received."
    citation = "arXiv:1406.2661"
    min_points = 3
    state_attributes = ("codes", "gen")

    def __init__(self):
        self.dim, self.seen, self.gen = 1, [], torch.Generator().manual_seed(0)

    def fit_points(self, X):
        self.seen.append(X)
        self.codes = X[:, :1].clone()

    def sample(self, n):
        return torch.rand(n, 1, generator=self.gen)


def test_fit_converts_once_and_checks():
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.arange(24, dtype=torch.float64).reshape(4, 2, 3)
    prior = _Counting()
    assert prior.fit(DataLoader(TensorDataset(x, torch.zeros(4)), batch_size=3)) is prior
    assert len(prior.seen) == 1
    got = prior.seen[0]
    assert got.dtype == torch.float32 and got.shape == (4, 6)
    torch.testing.assert_close(got, x.reshape(4, 6).float())
    torch.testing.assert_close(training_points(x.numpy()), got)  # arrays too
    with pytest.raises(ValueError, match="at least 3"):
        prior.fit(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        prior.fit(torch.tensor([[0.0], [float("nan")], [1.0]]))
    with pytest.raises(ValueError, match="shape"):
        prior.fit(torch.zeros(5))
    assert len(prior.seen) == 1  # rejected data never reaches fit_points


def test_default_state_dict_round_trip():
    a = _Counting().fit(torch.rand(5, 2))
    a.sample(3)  # advance the generator
    state = a.state_dict()
    assert set(state) == {"codes", "gen"}
    b = _Counting()
    b.load_state_dict(state)
    torch.testing.assert_close(b.codes, a.codes)
    torch.testing.assert_close(b.sample(4), a.sample(4))  # the generator continues where a's was
    with pytest.raises(KeyError, match="unknown keys"):
        b.load_state_dict({"other": 1})
