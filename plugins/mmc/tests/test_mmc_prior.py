"""The MMC prior: standardized codes along the solver's path, samples on path edges, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import toolkit_core as tt


def _rand(n, d=2, seed=0):
    return np.random.default_rng(seed).random((n, d))


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
