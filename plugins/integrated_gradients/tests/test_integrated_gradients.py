import numpy as np
import pytest
import torch
from torch import nn
from torchtrust_integrated_gradients import RULES, integrated_gradients, quadrature

import toolkit_core as tt
from toolkit_core.errors import ParameterError
from toolkit_core.testing import ModelSnapshot, check_method, contract_model


def smooth_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.Softplus(),
                         nn.Linear(16, 3)).double().eval()


def test_contract():
    check_method("integrated_gradients")


@pytest.mark.parametrize("rule", RULES)
def test_quadrature_weights_sum_to_one_and_integrate_polynomials(rule):
    a, w = quadrature(6, rule)
    assert abs(sum(w) - 1) < 1e-12 and all(0 <= t <= 1 for t in a)
    exact_degree = {"gausslegendre": 11, "riemann_trapezoid": 1, "riemann_middle": 1}.get(rule, 0)
    for d in range(exact_degree + 1):
        assert abs(sum(wi * ai**d for ai, wi in zip(a, w)) - 1 / (d + 1)) < 1e-12


def test_linear_model_gives_the_closed_form_for_any_steps():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double()
    x = torch.rand(4, 3, 2, 2, dtype=torch.float64)
    res = integrated_gradients(lin, x, 1, baseline=0.25, steps=3, rule="riemann_left")
    torch.testing.assert_close(res.attribution, (x - 0.25) * lin[1].weight[1].view(3, 2, 2))
    assert res.delta.abs().max() < 1e-12


@pytest.mark.parametrize("rule", RULES)
def test_completeness_error_goes_to_zero_as_steps_grow(rule):
    model = contract_model().double()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    errors = [integrated_gradients(model, x, 3, steps=s, rule=rule).delta.abs().max().item()
              for s in (4, 16, 64, 256)]
    scale = (model(x) - model(torch.zeros_like(x)))[:, 3].abs().max().item()
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 10 and errors[-1] < 1e-2 * scale, errors
    # on a smooth model Gauss-Legendre converges exponentially; Riemann sums like 1/steps
    mlp = smooth_mlp()
    xs = torch.rand(3, 12, dtype=torch.float64)
    e = [integrated_gradients(mlp, xs, 0, steps=s, rule=rule).delta.abs().max().item() for s in (8, 16, 32)]
    if rule == "gausslegendre":
        assert e[1] < 1e-12
    elif rule in ("riemann_left", "riemann_right"):
        assert 1.6 < e[0] / e[1] < 2.4 and 1.6 < e[1] / e[2] < 2.4, e  # first order
    else:
        assert 3.0 < e[0] / e[1] < 5.0, e  # second order


def test_memory_cap_and_method_report_the_same_numbers():
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x = torch.rand(5, 1, 16, 16)
    x0 = x.clone()
    full = integrated_gradients(model, x, [0, 1, 2, 3, 4], steps=10)
    capped = integrated_gradients(model, x, [0, 1, 2, 3, 4], steps=10, internal_batch_size=7)
    torch.testing.assert_close(capped.attribution, full.attribution, rtol=1e-5, atol=1e-6)
    ig = tt.create("integrated_gradients", steps=10, internal_batch_size=7)
    torch.testing.assert_close(ig(model, x, [0, 1, 2, 3, 4]), full.attribution, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ig.last_delta, full.delta, rtol=1e-4, atol=1e-5)
    snap.assert_unchanged(model)
    assert torch.equal(x, x0)
    with pytest.raises(ParameterError, match="parameter 'rule' must be"):
        tt.create("integrated_gradients", rule="simpson")
    with pytest.raises(ValueError, match="does not broadcast"):
        integrated_gradients(model, x, 0, baseline=torch.zeros(3))


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_trapezoid"])
def test_matches_captum(rule):
    captum = pytest.importorskip("captum.attr")
    model = contract_model()
    x = torch.rand(4, 1, 16, 16)
    t = torch.tensor([1, 2, 3, 4])
    ref, delta = captum.IntegratedGradients(model).attribute(
        x, baselines=0.1, target=t, n_steps=20, method=rule, return_convergence_delta=True)
    res = integrated_gradients(model, x, t, baseline=0.1, steps=20, rule=rule)
    ours = res.attribution
    if rule == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/(2n), 1/n, ..., 1/(2n): they sum to (n-1)/n, not 1, while its
        # nodes are spaced 1/(n-1); ours sum to 1 (completeness holds), so Captum's map is ours * (n-1)/n
        ours = ours * 19 / 20
    else:
        np.testing.assert_allclose(res.delta.numpy(), delta.numpy(), atol=1e-4)
    assert (ours - ref).norm() / ref.norm() < 1e-5
