"""ALP: the loss equals its formula on fixed inputs; the pairing kernel matches its reference and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchtrust_alp import weighted_pair_loss
from torchtrust_alp.kernels import _weighted_pair_loss

import toolkit_core as tt
from toolkit_core.testing import check_kernel, check_method, contract_model


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_contract_and_composition_with_any_attack():
    check_method("alp")
    pgd = tt.create("pgd", eps=0.05, alpha=0.02, steps=2)
    alp = tt.create("alp", attack=pgd, lam=0.25)
    assert alp.attack is pgd and alp.lam == 0.25


def test_loss_equals_formula_on_fixed_inputs():
    model = contract_model().train()
    x, y = _batch()
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    alp = tt.create("alp", attack=tt.create("pgd", steps=1), lam=0.7)
    loss, logs = alp.objective(model, x, x_adv, y)
    z, z_adv = model(x), model(x_adv)
    expected = 0.5 * F.cross_entropy(z, y) + 0.5 * F.cross_entropy(z_adv, y) + 0.7 * ((z - z_adv) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-6)
    # the 50/50 mixed batch: CE over the concatenated batch equals the average of both halves
    assert abs(logs["ce"] - F.cross_entropy(torch.cat([z, z_adv]), torch.cat([y, y])).item()) < 1e-6


def test_loss_generates_adversarial_examples_in_eval_mode_and_returns_to_train_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.Dropout(0.5),
                                torch.nn.Linear(32, 10)).train()
    seen = []
    model[2].register_forward_pre_hook(lambda m, a: seen.append(m.training))
    x, y = _batch()
    loss, _ = tt.create("alp", attack=tt.create("pgd", eps=0.05, alpha=0.02, steps=2)).loss(model, x, y)
    assert seen[:2] == [False, False] and seen[-1] is True  # 2 attack steps in eval, then the training pass
    assert all(m.training for m in model.modules())


def test_pair_kernel_reference_formula_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    za = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(5, generator=g, dtype=torch.float64) + 0.1).requires_grad_(True)
    out = weighted_pair_loss(z, za, w)
    with torch.no_grad():
        direct = sum(w[i].item() * ((z[i] - za[i]) ** 2).sum().item() for i in range(5)) / 5
    assert abs(out.item() - direct) < 1e-12
    # the registered backward formula vs finite differences, and vs autograd through the reference
    assert torch.autograd.gradcheck(weighted_pair_loss, (z, za, w))
    grads = torch.autograd.grad(weighted_pair_loss(z, za, w), (z, za, w))
    ref = torch.autograd.grad(_weighted_pair_loss(z, za, w), (z, za, w))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_pair_kernel_triton_matches_reference_in_interpreter():
    report = check_kernel("torchtrust_alp::weighted_pair_loss", "torchtrust_alp", dtypes=("float32", "float64"))
    assert len(report) == 8 and all(r["ok"] for r in report)
