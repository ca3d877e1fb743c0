"""DRS: the split, the radius (vs. a numerical minimization and the exact linear case), never below plain
smoothing where our reading of the abstract says so, contract, model state."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.stats import norm
from torchtrust_drs import DualRandomizedSmoothing, drs_radius, merge, split
from torchtrust_drs.methods import upsample
from torchtrust_randomized_smoothing import RandomizedSmoothing

from toolkit_core.testing import ModelSnapshot, check_method


def test_contract():
    check_method("drs")


def test_split_is_a_partition_and_merge_inverts_it():
    x = torch.rand(3, 2, 4, 6)
    a, b = split(x)
    assert a.shape == b.shape == (3, 2, 4, 3) and a.numel() + b.numel() == x.numel()  # m + n = d
    assert torch.equal(merge(a, b), x)
    assert torch.equal(a[0, 0, 0], x[0, 0, 0, 0::2]) and torch.equal(a[0, 0, 1], x[0, 0, 1, 1::2])
    with pytest.raises(ValueError, match="even"):
        split(torch.rand(1, 1, 4, 5))


@pytest.mark.parametrize("p1,p2", [(0.9, 0.9), (0.99, 0.7), (0.6, 0.45), (0.999, 0.3)])
def test_radius_is_the_smallest_perturbation_that_flips_the_average(p1, p2):
    sigma = 0.5
    u1, u2 = norm.ppf(p1), norm.ppf(p2)
    r = float(drs_radius(torch.tensor([p1]), torch.tensor([p2]), sigma))
    if u1 + u2 <= 0:
        assert r == 0.0
        return
    # min sqrt(a^2 + b^2) s.t. Phi(u1 - a/sigma) + Phi(u2 - b/sigma) = 1, a, b >= 0
    res = minimize(lambda v: v @ v, np.array([0.1, 0.1]), method="SLSQP", bounds=[(0, None)] * 2,
                   constraints=[{"type": "eq", "fun": lambda v: norm.cdf(u1 - v[0] / sigma)
                                 + norm.cdf(u2 - v[1] / sigma) - 1}], options={"ftol": 1e-14})
    assert r == pytest.approx(math.sqrt(res.fun), rel=1e-4)


def test_never_below_plain_smoothing_when_each_half_is_as_confident():
    """Our reading of the abstract: when each smoothed sub-image is at least as confident as the smoothed
    full image (p1, p2 >= p >= 1/2), DRS certifies at least sqrt(2) times plain smoothing's radius."""
    sigma = 0.25
    grid = torch.linspace(0.5, 0.9999, 40, dtype=torch.float64)
    for p in grid:
        p1 = grid[grid >= p]
        for p2 in (p, (p + 1) / 2):
            rd = drs_radius(p1, torch.full_like(p1, float(p2)), sigma)
            rs = RandomizedSmoothing.radius(p.expand(len(p1)).clone(), sigma)
            assert bool((rd >= math.sqrt(2) * rs - 1e-12).all())


class _Confident(torch.nn.Module):
    """Predicts class 3 whatever the noise: both smoothings saturate (nA = n)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 10)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.zero_()
            self.lin.bias[3] = 5.0

    def forward(self, x):
        return self.lin(x.flatten(1)[:, :1] * 0)


def test_monte_carlo_drs_radius_not_below_plain_smoothing_on_the_same_model():
    model = _Confident().eval()
    x = torch.rand(5, 1, 4, 4)
    kw = {"sigma": 0.25, "n0": 20, "n": 200, "alpha": 0.001, "seed": 0}
    p_rs, r_rs = RandomizedSmoothing(**kw).certify(model, x)
    p_drs, r_drs = DualRandomizedSmoothing(**kw).certify(model, x)
    assert bool((p_rs == 3).all()) and bool((p_drs == 3).all())
    assert bool((r_drs >= r_rs).all())
    # the largest radius n draws can certify: sigma Phi^-1(alpha^(1/n)) vs sqrt(2) sigma Phi^-1((alpha/2)^(1/n))
    assert float(r_rs[0]) == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 200)), rel=1e-5)
    assert float(r_drs[0]) == pytest.approx(math.sqrt(2) * 0.25 * norm.ppf(0.0005 ** (1 / 200)), rel=1e-5)


def test_certify_never_exceeds_the_exact_radius_of_a_linear_model():
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, 16, generator=g))
        model[1].bias.zero_()
    x = torch.rand(12, 1, 4, 4, generator=g)
    sigma = 0.5

    def exact_p(sub, k):  # P(class 1) of sub-image k under N(0, sigma^2) noise, exactly (a linear functional)
        v = sub.clone().requires_grad_(True)
        z = model(upsample(v))
        m = z[:, 1] - z[:, 0]
        (w,) = torch.autograd.grad(m.sum(), v)
        return norm.cdf((m / (sigma * w.flatten(1).norm(dim=1))).detach().double().numpy())

    x1, x2 = split(x)
    q1, q2 = exact_p(x1, 0), exact_p(x2, 1)
    cls = ((q1 + q2) / 2 > 0.5).astype(int)
    pa1, pa2 = np.where(cls == 1, q1, 1 - q1), np.where(cls == 1, q2, 1 - q2)
    exact = drs_radius(torch.from_numpy(pa1), torch.from_numpy(pa2), sigma)
    snap = ModelSnapshot.take(model)
    pred, radius = DualRandomizedSmoothing(sigma=sigma, n0=100, n=2000, batch_size=4000, seed=1).certify(model, x)
    snap.assert_unchanged(model)
    ok = pred >= 0
    assert ok.sum() >= 6
    assert torch.equal(pred[ok], torch.from_numpy(cls)[ok])
    assert bool((radius.double()[ok] <= exact[ok] + 1e-6).all())
