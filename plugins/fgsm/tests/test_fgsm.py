"""FGSM equals its formula evaluated directly; bounds, eps = 0, errors, model state."""

import pytest
import torch
import torch.nn.functional as F

import toolkit_core as tt
from toolkit_core.testing import ModelSnapshot, check_method


def test_contract():
    check_method("fgsm")


def test_equals_the_formula(digits):
    model, x, y = digits
    eps = 0.07
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)  # mean or sum: same sign
    expected = torch.clamp(x + eps * g.sign(), 0, 1)
    x_adv = tt.create("fgsm", eps=eps)(model, x, y)
    assert torch.equal(x_adv, expected)
    assert float((x_adv - x).abs().max()) <= eps + 1e-7
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == y).float().mean() < (model(x).argmax(1) == y).float().mean() - 0.1


def test_eps_zero_is_identity(digits):
    model, x, y = digits
    assert torch.equal(tt.create("fgsm", eps=0.0)(model, x, y), x)


def test_errors_and_model_state(digits):
    model, x, y = digits
    model.train()
    snap = ModelSnapshot.take(model)
    fgsm = tt.create("fgsm", eps=0.1)
    fgsm(model, x, y)
    snap.assert_unchanged(model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fgsm(model, x - 0.5, y)
    with pytest.raises(ValueError, match="classes"):
        fgsm(model, x, torch.full_like(y, 12))
    with pytest.raises(ValueError, match="shape"):
        fgsm(model, x, y[:, None])
    with pytest.raises(ValueError, match="eps"):
        tt.create("fgsm", eps=-1.0)
    snap.assert_unchanged(model)
