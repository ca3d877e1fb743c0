"""PGD-AT: the loss is the cross-entropy on the attack's output, crafted with the model in eval mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import toolkit_core as tt
from toolkit_core.testing import check_method, contract_model


def test_contract():
    check_method("pgd_at")


def test_loss_is_ce_on_attack_output():
    model = contract_model().train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    attack = tt.create("pgd", eps=0.1, alpha=0.05, steps=3, seed=0)
    loss, logs = tt.create("pgd_at", attack=attack).loss(model, x, y)
    assert model.training
    x_adv = attack(model, x, y)  # seeded attack: the same adversarial batch
    torch.testing.assert_close(loss, F.cross_entropy(model(x_adv), y), atol=1e-6, rtol=1e-6)
    model.eval()
    with torch.no_grad():
        assert logs["clean_acc"] == float((model(x).argmax(1) == y).float().mean())
