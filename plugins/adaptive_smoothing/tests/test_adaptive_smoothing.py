"""Adaptive smoothing: the mixture equals its formula, bases frozen and copied, the mixer learns to
detect adversarial inputs, the mixture sits between its bases, contract, errors."""

import pytest
import torch
import torch.nn.functional as F
from torchtrust_adaptive_smoothing import AdaptiveSmoothing, MixedClassifier

import toolkit_core as tt
from toolkit_core.data import load_digits
from toolkit_core.models import digits_model
from toolkit_core.testing import ModelSnapshot, check_method


def test_contract():
    check_method("adaptive_smoothing")


def test_mixture_equals_the_formula_and_bases_are_untouched(digits):
    std, x, y = digits
    robust = digits_model(seed=1)
    snap_s, snap_r = ModelSnapshot.take(std), ModelSnapshot.take(robust)
    mixed = MixedClassifier(std, robust).eval()
    with torch.no_grad():
        a = mixed.alpha(x)[:, None]
        expected = ((1 - a) * F.softmax(std(x), 1) + a * F.softmax(robust(x), 1)).clamp_min(1e-12).log()
        assert torch.allclose(mixed(x), expected, rtol=1e-5, atol=1e-5)
    assert all(not p.requires_grad for p in [*mixed.standard.parameters(), *mixed.robust.parameters()])
    assert all(p.requires_grad for p in mixed.mixer.parameters())
    mixed.train()
    assert not mixed.standard.training and not mixed.robust.training and mixed.mixer.training
    snap_s.assert_unchanged(std)
    snap_r.assert_unchanged(robust)


@pytest.mark.slow
def test_mixer_learns_to_detect_and_the_mixture_sits_between_its_bases(digits):
    std, x_test, y_test = digits
    robust = digits_model(seed=1)
    mixed = MixedClassifier(std, robust)
    attack = tt.create("pgd", eps=0.1, alpha=0.03, steps=3, seed=0)
    defense = tt.create("adaptive_smoothing", attack=attack)
    train = load_digits(16, "train")
    x, y = train.tensors
    x, y = x[:256], y[:256]
    torch.manual_seed(0)
    mixed = MixedClassifier(std, robust)
    opt = torch.optim.Adam(mixed.mixer.parameters(), lr=3e-2)
    mixed.train()
    for i in range(40):
        idx = torch.arange(64) + (i % 4) * 64
        loss, logs = defense.loss(mixed, x[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    mixed.eval()
    x_adv = attack(mixed, x_test, y_test)
    with torch.no_grad():
        a_clean, a_adv = float(mixed.alpha(x_test).mean()), float(mixed.alpha(x_adv).mean())
    assert a_adv > a_clean + 0.3  # adversarial inputs go to the robust classifier (measured: 0.18 vs 0.64)
    with torch.no_grad():
        p_std, p_rob = F.softmax(std(x_test), 1), F.softmax(robust(x_test), 1)
        p_mix = mixed(x_test).exp()
    lo, hi = torch.minimum(p_std, p_rob), torch.maximum(p_std, p_rob)
    assert bool(((p_mix >= lo - 1e-6) & (p_mix <= hi + 1e-6)).all())  # a convex combination, per class


def test_plain_model_and_errors(digits):
    model, x, y = digits
    defense = AdaptiveSmoothing(attack=tt.create("fgsm", eps=0.1))
    loss, logs = defense.loss(model.train(), x[:16], y[:16])
    model.eval()
    x_adv = tt.create("fgsm", eps=0.1)(model, x[:16], y[:16])
    with torch.no_grad():
        expected = F.cross_entropy(model(torch.cat([x[:16], x_adv])), torch.cat([y[:16], y[:16]]))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="detector_weight"):
        AdaptiveSmoothing(detector_weight=-1.0)
