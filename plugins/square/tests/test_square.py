"""Square: never calls backward, query budget, bounds, schedule, success, errors, model state."""

import pytest
import torch
from torch import nn
from torchtrust_square.methods import HALVINGS, Square, eta, margin, p_schedule

import toolkit_core as tt
from toolkit_core.testing import ModelSnapshot, check_method


class Spy(nn.Module):
    """Counts forward queries and fails on any gradient computation through the model."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.queries = 0

    def forward(self, x):
        assert not torch.is_grad_enabled(), "square computed a graph"
        self.queries += x.shape[0]
        out = self.model(x)
        if out.requires_grad:  # pragma: no cover - would mean a backward could follow
            out.register_hook(lambda g: (_ for _ in ()).throw(AssertionError("backward called")))
        return out


def test_contract():
    check_method("square")
    check_method("square", norm="l2", eps=1.0, restarts=2)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_no_gradients_budget_bounds_success(digits, norm, eps):
    model, x, y = digits
    spy = Spy(model)
    for p in model.parameters():
        p.grad = None
    x_adv = tt.create("square", eps=eps, norm=norm, n_queries=150, seed=0)(spy, x, y)
    assert all(p.grad is None for p in model.parameters())
    assert spy.queries <= 150 * len(x) + len(x)  # the budget per point, plus the clean-class check
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
        adv = float((model(x_adv).argmax(1) == y).float().mean())
    assert adv < clean - 0.2  # non-trivial success without gradients


def test_more_queries_never_worse(digits):
    model, x, y = digits
    acc = []
    for q in (20, 200):
        x_adv = tt.create("square", eps=0.08, n_queries=q, seed=3)(model, x, y)
        with torch.no_grad():
            acc.append(model(x_adv).argmax(1) == y)
    assert bool((acc[0] | ~acc[1]).all())  # same random stream: the longer search extends the shorter


def test_schedule_margin_and_pattern():
    assert p_schedule(0, 0.8, 5000, False) == 0.8
    assert p_schedule(11, 0.8, 5000, False) == 0.4
    assert p_schedule(9000, 0.8, 5000, False) == 0.8 / 2 ** len(HALVINGS)
    assert p_schedule(100, 0.8, 1000, True) == p_schedule(1000, 0.8, 10000, False)
    z = torch.tensor([[2.0, 1.0, 3.0], [0.0, -1.0, -2.0]])
    assert torch.equal(margin(z, torch.tensor([0, 0])), torch.tensor([-1.0, 1.0]))
    e = eta(6, "cpu", torch.float64, torch.Generator().manual_seed(0))
    assert abs(float(e.norm()) - 1) < 1e-12 and abs(float(e.sum())) < 1e-12  # unit norm, two opposite halves


def test_eps_zero_and_errors(digits):
    model, x, y = digits
    snap = ModelSnapshot.take(model)
    assert torch.equal(tt.create("square", eps=0.0)(model, x, y), x)
    with pytest.raises(ValueError, match="classes"):
        tt.create("square", n_queries=3)(model, x, torch.full_like(y, 11))
    for bad in ({"eps": -1.0}, {"n_queries": 0}, {"p_init": 0.0}, {"norm": "l1"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Square(**bad)
    snap.assert_unchanged(model)
