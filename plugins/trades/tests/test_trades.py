"""TRADES: the loss equals its formula; the inner maximization stays in the ball and increases the KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchtrust_trades import trades_kl

import toolkit_core as tt
from toolkit_core.testing import ModelSnapshot, check_method, contract_model


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_contract():
    check_method("trades")
    check_method("trades", inner="attack")


def test_loss_equals_formula_on_fixed_inputs():
    model = contract_model().train()
    x, y = _batch()
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    trades = tt.create("trades", attack=tt.create("pgd", steps=1), beta=6.0)
    loss, logs = trades.objective(model, x, x_adv, y)
    z, z_adv = model(x), model(x_adv)
    p, q = F.softmax(z, 1), F.softmax(z_adv, 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    torch.testing.assert_close(loss, F.cross_entropy(z, y) + 6.0 * kl, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(trades_kl(z, z_adv), kl, atol=1e-7, rtol=1e-6)
    assert abs(logs["kl"] - kl.item()) < 1e-6


def test_inner_maximization_stays_in_ball_raises_kl_and_keeps_model():
    torch.manual_seed(0)
    model = contract_model().train()
    snap = ModelSnapshot.take(model)
    x, _ = _batch(16)
    eps = 0.1
    trades = tt.create("trades", attack=tt.create("pgd", eps=eps, alpha=0.03, steps=5))
    x_adv = trades.maximize_kl(model, x)
    snap.assert_unchanged(model)  # mode (train) and requires_grad restored, weights untouched
    assert float((x_adv - x).abs().max()) <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        z = model(x)
        kl_adv = float(trades_kl(z, model(x_adv)))
        kl_noise = float(trades_kl(z, model((x + 0.001 * torch.randn_like(x)).clamp(0, 1))))
    assert kl_adv > 100 * max(kl_noise, 1e-9)
