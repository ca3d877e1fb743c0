"""PGD: threat-model bounds, the step formula, eps = 0, restarts, determinism, errors, model state."""

import pytest
import torch
import torch.nn.functional as F
from torchtrust_pgd.methods import PGD, better

import toolkit_core as tt
from toolkit_core.testing import ModelSnapshot


def _acc(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _input_grad(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 0.1, 0.03), ("l2", 1.0, 0.3)])
def test_never_leaves_ball_or_unit_box(digits, norm, eps, alpha):
    model, x, y = digits
    x_adv = tt.create("pgd", eps=eps, alpha=alpha, steps=8, norm=norm, seed=0)(model, x, y)
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert float(size.max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(size.max()) > 0.5 * eps  # it actually moved
    assert _acc(model, x_adv, y) < _acc(model, x, y) - 0.2  # and it is an attack


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_zero_returns_the_input_and_clean_accuracy(digits, norm):
    model, x, y = digits
    x_adv = tt.create("pgd", eps=0.0, steps=3, norm=norm, seed=0)(model, x, y)
    assert torch.equal(x_adv, x)
    assert _acc(model, x_adv, y) == _acc(model, x, y)


def test_one_linf_step_is_the_formula(digits):
    model, x, y = digits
    eps, alpha = 0.05, 0.02
    x_adv = PGD(eps=eps, alpha=alpha, steps=1, random_start=False)(model, x, y)
    expected = torch.clamp(x + alpha * _input_grad(model, x, y).sign(), 0, 1)
    expected = torch.min(torch.max(expected, x - eps), x + eps).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-7)


def test_one_l2_step_is_the_formula(digits):
    model, x, y = digits
    eps, alpha = 0.5, 2.0  # alpha > eps: the projection is active
    x_adv = PGD(eps=eps, alpha=alpha, steps=1, norm="l2", random_start=False)(model, x, y)
    g = _input_grad(model, x, y).flatten(1)
    step = alpha * g / g.norm(dim=1, keepdim=True)
    step = step * torch.clamp(eps / step.norm(dim=1, keepdim=True), max=1.0)
    expected = (x.flatten(1) + step).clamp(0, 1).view_as(x)
    assert torch.allclose(x_adv, expected, atol=1e-6)


def test_random_start_is_seeded(digits):
    model, x, y = digits
    a = PGD(eps=0.1, steps=2, seed=3)(model, x, y)
    b = PGD(eps=0.1, steps=2, seed=3)(model, x, y)
    c = PGD(eps=0.1, steps=2, seed=4)(model, x, y)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_restarts_keep_the_per_sample_worst_case(digits):
    model, x, y = digits
    attack = PGD(eps=0.05, alpha=0.02, steps=3, restarts=3, seed=0)
    x_adv = attack(model, x, y)
    # replay the three runs with the same generator and pick per sample by the documented rule
    g = torch.Generator().manual_seed(0)
    runs = [attack._run(model, x, y, g, check=False) for _ in range(3)]
    with torch.no_grad():
        stats = [(F.cross_entropy(model(r), y, reduction="none"), model(r).argmax(1) != y) for r in runs]
    expected = runs[0].clone()
    best_loss, best_wrong = stats[0]
    for r, (loss, wrong) in zip(runs[1:], stats[1:]):
        take = better(loss, wrong, best_loss, best_wrong)
        expected[take] = r[take]
        best_loss, best_wrong = torch.where(take, loss, best_loss), best_wrong | wrong
    assert torch.equal(x_adv, expected)
    # the runs differ, so the choice matters; the result is never weaker than any single run
    assert not torch.equal(runs[0], runs[1])
    with torch.no_grad():
        wrong = model(x_adv).argmax(1) != y
        loss = F.cross_entropy(model(x_adv), y, reduction="none")
    for run_loss, run_wrong in stats:
        assert bool((wrong >= run_wrong).all())
        same = wrong == run_wrong
        assert bool((loss[same] >= run_loss[same] - 1e-6).all())
    assert _acc(model, x_adv, y) <= min(_acc(model, r, y) for r in runs)


def test_bad_inputs_give_clear_errors(digits):
    model, x, y = digits
    pgd = PGD(eps=0.1, steps=1, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd(model, x * 2 + 0.5, y)
    with pytest.raises(ValueError, match="shape"):
        pgd(model, x, y[:-1])
    with pytest.raises(TypeError, match="integer"):
        pgd(model, x, y.float())
    with pytest.raises(ValueError, match="classes"):
        pgd(model, x, torch.full_like(y, 10))
    with pytest.raises(ValueError, match="negative"):
        pgd(model, x, torch.full_like(y, -1))
    with pytest.raises(ValueError, match="eps"):
        tt.create("pgd", eps=-0.1)
    with pytest.raises(ValueError, match="steps"):
        tt.create("pgd", steps=0)
    with pytest.raises(ValueError, match="alpha"):
        tt.create("pgd", alpha=-1.0)
    with pytest.raises(ValueError, match="restarts"):
        tt.create("pgd", restarts=0)
    with pytest.raises(TypeError, match="steps"):
        tt.create("pgd", steps=2.5)


def test_model_comes_back_unchanged(digits):
    model, x, y = digits
    model.train()
    model.fc.weight.requires_grad_(False)
    snap = ModelSnapshot.take(model)
    x_adv = PGD(eps=0.1, steps=2, restarts=2, seed=0)(model, x, y)
    snap.assert_unchanged(model)
    assert model.training and not model.fc.weight.requires_grad and model.head.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError):
        PGD(eps=0.1, steps=2)(model, x, torch.full_like(y, 10))
    snap.assert_unchanged(model)
    # the attack itself ran in eval mode: the same call on the eval-mode model gives the same points
    model.eval()
    assert torch.equal(x_adv, PGD(eps=0.1, steps=2, restarts=2, seed=0)(model, x, y))
