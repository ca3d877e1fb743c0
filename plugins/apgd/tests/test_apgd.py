"""APGD: the published checkpoint schedule, at least as strong as PGD, bounds, DLR, restarts, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchtrust_apgd.methods import APGD, dlr_loss

import toolkit_core as tt
from toolkit_core.data import load_digits
from toolkit_core.testing import ModelSnapshot, check_method


def _acc(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_contract():
    check_method("apgd")
    check_method("apgd", norm="l2", eps=1.0, loss="dlr", restarts=2)


@pytest.mark.parametrize("n", [100, 50, 20])
def test_checkpoints_follow_the_paper(n):
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); w_j = ceil(p_j * N)
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    expected = sorted({math.ceil(q * n - 1e-9) for q in p[1:]})  # short runs: repeated w_j collapse
    assert APGD.checkpoints(n) == expected
    if n == 100:
        assert expected == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_at_least_as_strong_as_pgd_with_the_same_budget(digits, eps):
    """Same eps and number of gradient steps; PGD with both common step sizes (eps/4, 2.5 eps/steps).

    An empirical property (both are random-start heuristics), checked on 300 test digits.
    """
    model = digits[0]
    x, y = load_digits(16, "test").tensors
    x, y = x[:300], y[:300]
    steps = 20
    acc_apgd = _acc(model, tt.create("apgd", eps=eps, steps=steps, seed=0)(model, x, y), y)
    for alpha in (eps / 4, 2.5 * eps / steps):
        acc_pgd = _acc(model, tt.create("pgd", eps=eps, alpha=alpha, steps=steps, seed=0)(model, x, y), y)
        assert acc_apgd <= acc_pgd
    assert acc_apgd < _acc(model, x, y) - 0.1


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_never_leaves_ball_or_unit_box(digits, norm, eps):
    model, x, y = digits
    x_adv = tt.create("apgd", eps=eps, steps=10, norm=norm, seed=1)(model, x, y)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_eps_zero_gives_clean_accuracy(digits):
    model, x, y = digits
    x_adv = tt.create("apgd", eps=0.0, steps=5, seed=0)(model, x, y)
    assert torch.equal(x_adv, x)
    assert _acc(model, x_adv, y) == _acc(model, x, y)


def test_dlr_loss_formula():
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, 1.0, 0.0]])
    y = torch.tensor([0, 0])
    # sample 0: true class on top: -(3 - 1) / (3 - 0); sample 1: -(0.5 - 2) / (2 - 0.5)
    assert torch.allclose(dlr_loss(z, y), torch.tensor([-2.0 / 3.0, 1.0]))
    with pytest.raises(ValueError, match="3 classes"):
        dlr_loss(torch.randn(2, 2), torch.tensor([0, 1]))


def test_restarts_never_weaker_per_sample(digits):
    model, x, y = digits
    one = tt.create("apgd", eps=0.05, steps=5, seed=0)(model, x, y)
    three = tt.create("apgd", eps=0.05, steps=5, restarts=3, seed=0)(model, x, y)
    with torch.no_grad():
        w1, w3 = model(one).argmax(1) != y, model(three).argmax(1) != y
        l1 = F.cross_entropy(model(one), y, reduction="none")
        l3 = F.cross_entropy(model(three), y, reduction="none")
    assert bool((w3 >= w1).all())
    same = w3 == w1
    assert bool((l3[same] >= l1[same] - 1e-6).all())


def test_errors_and_model_state(digits):
    model, x, y = digits
    snap = ModelSnapshot.take(model)
    apgd = tt.create("apgd", eps=0.1, steps=3, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        apgd(model, x + 1.5, y)
    with pytest.raises(ValueError, match="classes"):
        apgd(model, x, torch.full_like(y, 10))
    with pytest.raises(TypeError, match="integer"):
        apgd(model, x, y.double())
    for bad in ({"eps": -0.1}, {"steps": 0}, {"rho": 0.0}, {"momentum": 1.5}, {"restarts": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            tt.create("apgd", **bad)
    apgd(model, x, y)
    snap.assert_unchanged(model)


def test_apgd_t_contract_and_targeted_dlr_formula():
    from torchtrust_apgd.methods import targeted_dlr_loss

    check_method("apgd_t")
    z = torch.tensor([[4.0, 3.0, 1.0, 0.0, -1.0]])
    # sorted: 4, 3, 1, 0, -1; y = 0, t = 2: -(4 - 1) / (4 - (1 + 0) / 2)
    assert torch.allclose(targeted_dlr_loss(z, torch.tensor([0]), torch.tensor([2])), torch.tensor([-3.0 / 3.5]))
    # invariant to shifting and positive rescaling of the logits
    y, t = torch.tensor([0]), torch.tensor([3])
    assert torch.allclose(targeted_dlr_loss(2 * z + 5, y, t), targeted_dlr_loss(z, y, t))
    with pytest.raises(ValueError, match="4 classes"):
        targeted_dlr_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([1, 2]))


def test_apgd_t_targets_per_sample_best_and_bounds(digits):
    model, x, y = digits
    one = tt.create("apgd_t", eps=0.06, steps=10, n_target_classes=1, seed=0)(model, x, y)
    three = tt.create("apgd_t", eps=0.06, steps=10, n_target_classes=3, seed=0)(model, x, y)
    assert float((three - x).abs().max()) <= 0.06 + 1e-6
    with torch.no_grad():
        w1, w3 = model(one).argmax(1) != y, model(three).argmax(1) != y
        clean = model(x).argmax(1) == y
    assert bool((w3 >= w1).all())  # the first target's run is repeated exactly, later targets add points
    assert float(w3[clean].float().mean()) > 0.2
    with pytest.raises(ValueError, match="n_target_classes"):
        tt.create("apgd_t", n_target_classes=0)
