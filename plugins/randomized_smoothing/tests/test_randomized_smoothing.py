"""Randomized smoothing against the closed form of a linear classifier, Clopper-Pearson against scipy,
abstention, predict, certified-accuracy curves, reproducibility and model state."""

import math

import pytest
import torch
from scipy.stats import binomtest, norm
from torchtrust_randomized_smoothing import RandomizedSmoothing, clopper_pearson_lower

import toolkit_core as tt
from toolkit_core.certification import certify_dataset
from toolkit_core.testing import ModelSnapshot, check_method


def test_contract():
    check_method("randomized_smoothing")


def _linear(d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, 2)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, d, generator=g))
        model[1].bias.copy_(torch.randn(2, generator=g) * 0.1)
    w = model[1].weight[1] - model[1].weight[0]
    b = model[1].bias[1] - model[1].bias[0]
    return model, w.detach(), b.detach()


def test_clopper_pearson_matches_scipy():
    n, alpha = 500, 0.001
    k = torch.tensor([0, 1, 250, 499, 500])
    ours = clopper_pearson_lower(k, n, alpha)
    # the one-sided (1 - alpha) bound is the lower end of the two-sided (1 - 2 alpha) exact interval
    ref = [0.0] + [binomtest(int(v), n).proportion_ci(1 - 2 * alpha, "exact").low for v in k[1:]]
    assert torch.allclose(ours, torch.tensor(ref, dtype=torch.float64), atol=1e-12)


def test_radius_with_the_exact_probability_is_the_distance_to_the_hyperplane():
    """Linear f: P(f(x + e) = 1) = Phi((w.x + b) / (sigma ||w||)) exactly, so sigma Phi^-1(pA) = |w.x + b| / ||w||."""
    _, w, b = _linear()
    x = torch.rand(50, 6, generator=torch.Generator().manual_seed(1))
    m = x @ w + b
    for sigma in (0.5, 1.0):  # z = margin / sigma stays below ~6: Phi keeps its precision in float64
        p_a = torch.from_numpy(norm.cdf((m.abs() / (sigma * w.norm())).double().numpy()))
        r = RandomizedSmoothing.radius(p_a, sigma)
        assert torch.allclose(r, (m.abs() / w.norm()).double(), atol=1e-7)


def test_certify_agrees_with_the_closed_form_of_a_linear_classifier():
    model, w, b = _linear()
    sigma, n, alpha = 0.5, 4000, 0.001
    x = torch.rand(24, 6, generator=torch.Generator().manual_seed(2))
    m = x @ w + b
    true_radius = m.abs() / w.norm()
    p_exact = torch.from_numpy(norm.cdf((true_radius / sigma).double().numpy()))
    rs = RandomizedSmoothing(sigma=sigma, n0=100, n=n, alpha=alpha, batch_size=4096, seed=0)
    pred, radius = rs.certify(model, x)
    sd = (n * p_exact * (1 - p_exact)).sqrt()
    lo = clopper_pearson_lower((n * p_exact - 5 * sd).floor().clamp(0, n), n, alpha)
    hi = clopper_pearson_lower((n * p_exact + 5 * sd).ceil().clamp(0, n), n, alpha)
    r_lo, r_hi = RandomizedSmoothing.radius(lo, sigma), RandomizedSmoothing.radius(hi, sigma)
    certified = pred >= 0
    assert certified.sum() >= 12
    assert bool((radius.double() <= true_radius.double() + 1e-6)[certified].all())  # never over-certifies
    assert bool(((radius.double() >= r_lo - 1e-6) & (radius.double() <= r_hi + 1e-6))[certified].all())
    assert torch.equal(pred[certified], (m > 0).long()[certified])
    assert bool((radius[~certified] == 0).all())
    # and the ratio to the exact radius is close to 1 for clear points (CP at n = 4000)
    clear = certified & (p_exact > 0.9)
    assert float((radius[clear] / true_radius[clear]).min()) > 0.75


def test_abstains_on_the_decision_boundary_and_predict():
    model, w, b = _linear()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(10, 6, generator=g)
    x_on = x - ((x @ w + b) / (w @ w))[:, None] * w  # projected onto the hyperplane: pA = 1/2
    rs = RandomizedSmoothing(sigma=0.5, n0=100, n=1000, alpha=0.001, seed=0)
    pred, radius = rs.certify(model, x_on)
    assert int((pred == -1).sum()) >= 9 and float(radius.max()) == 0.0
    assert int((rs.predict(model, x_on) == -1).sum()) >= 9
    far = x + 3.0 * torch.sign(x @ w + b)[:, None] * w / w.norm()  # >= 3 away from the boundary
    assert torch.equal(rs.predict(model, far), (far @ w + b > 0).long())


def test_curve_reproducibility_and_model_state(digits):
    model, x, y = digits
    snap = ModelSnapshot.take(model)
    rs = tt.create("randomized_smoothing", sigma=0.25, n0=20, n=100, batch_size=2000, seed=0)
    res = certify_dataset(rs, model, (x[:40], y[:40]), batch_size=20)
    curve = res.curve([0.0, 0.1, 0.2, 0.5])
    values = list(curve.values())
    assert values == sorted(values, reverse=True) and values[0] > 0.5
    assert res.certified_accuracy(0.0) == pytest.approx(float((res.predictions == y[:40]).float().mean()))
    assert max(res.radii) <= 0.25 * norm.ppf(0.001 ** (1 / 100)) + 1e-6  # the largest radius n draws can give
    again = certify_dataset(rs, model, (x[:40], y[:40]), batch_size=20)
    assert torch.equal(again.radii, res.radii)
    d = res.to_dict()
    assert d["n"] == 40 and math.isclose(d["curve"]["0.0"], values[0])
    snap.assert_unchanged(model)
    with pytest.raises(ValueError, match="sigma"):
        RandomizedSmoothing(sigma=0.0)
