"""AALP (our operational reading): Guided Dropout, the ramp, adaptive weights, and the loss formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchtrust_aalp import adaptive_weights, find_head, guided_dropout

import toolkit_core as tt
from toolkit_core.testing import check_method, contract_model


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _features(model, x):
    """Penultimate features of DigitsCNN, computed by hand (the input of model.head)."""
    return model.relu(model.fc(model.flatten(model.features(x))))


@torch.no_grad()
def _direct_mask(h, weight, y, k):
    """Reference: per row, python-sort the contributions h_j W[y, j] and zero the k smallest."""
    mask = torch.ones_like(h)
    for i in range(h.shape[0]):
        c = [((h[i, j] * weight[y[i], j]).item(), j) for j in range(h.shape[1])]
        for _, j in sorted(c)[:k]:
            mask[i, j] = 0.0
    return mask


def test_contract_and_registration():
    check_method("aalp")
    info = tt.get_info("aalp")
    assert info.provider == "torchtrust-aalp" and info.kernels == ("torchtrust_alp::weighted_pair_loss",)
    assert {"lam", "p_max", "ramp_epochs", "head", "adaptive", "guided_dropout", "contribution"} <= {
        p.name for p in info.parameters
    }


@pytest.mark.parametrize("p,width,k", [(0.3, 20, 6), (0.25, 16, 4), (0.3, 64, 19)])
def test_guided_dropout_drops_exactly_the_lowest_contributions(p, width, k):
    g = torch.Generator().manual_seed(width)
    h = torch.randn(6, width, generator=g)
    weight = torch.randn(10, width, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    out, mask = guided_dropout(h, weight, y, p)
    assert torch.equal(mask, _direct_mask(h, weight, y, k))
    assert (mask == 0).sum(1).tolist() == [k] * 6  # floor(p * H) per sample
    torch.testing.assert_close(out, h * mask / (1 - p), atol=0, rtol=0)
    # the dropped features are exactly the ones with the lowest contribution
    c = h * weight[y]
    assert (c[mask == 0].view(6, k).amax(1) <= c[mask == 1].view(6, width - k).amin(1)).all()
    _, mask_abs = guided_dropout(h, weight, y, p, contribution="abs")
    assert torch.equal(mask_abs, _direct_mask(c.abs(), torch.ones(10, width), y, k))


def test_guided_dropout_in_the_model_train_only_and_eval_deterministic():
    model = contract_model()
    x, y = _batch()
    aalp = tt.create("aalp", attack=tt.create("pgd", steps=1), p_max=0.25)
    h = _features(model, x)
    model.train()
    with aalp.dropout_active(model, y):
        out = model(x)
    expected = model.head(h * _direct_mask(h, model.head.weight, y, 4) / 0.75)  # hidden=16 -> 4 dropped
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    model.eval()
    with aalp.dropout_active(model, y):
        out_eval = model(x)
    torch.testing.assert_close(out_eval, model.head(h), atol=0, rtol=0)  # no dropout in eval mode
    assert not model.head._forward_pre_hooks  # the hook is gone after the block


def test_ramp_from_zero_to_p_max():
    aalp = tt.create("aalp", p_max=0.3)
    assert [round(aalp.rate(e, 4), 10) for e in range(4)] == [0.0, 0.1, 0.2, 0.3]
    assert aalp.rate(0, 1) == 0.3  # a single epoch trains at p_max
    short = tt.create("aalp", p_max=0.3, ramp_epochs=2)
    assert [short.rate(e, 5) for e in range(5)] == [0.0, 0.3, 0.3, 0.3, 0.3]
    aalp.start_epoch(2, 4)
    assert aalp.p == pytest.approx(0.2)


def test_adaptive_weights_have_mean_lambda_and_follow_p_y_given_x_adv():
    g = torch.Generator().manual_seed(0)
    z_adv = 3 * torch.randn(32, 10, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    w = adaptive_weights(z_adv, y, 0.5)
    assert float(w.mean()) == pytest.approx(0.5, abs=1e-6)
    q = F.softmax(z_adv, 1)[torch.arange(32), y]
    torch.testing.assert_close(w, 0.5 * q / q.mean())
    assert not w.requires_grad


def test_loss_equals_formula_on_fixed_inputs():
    torch.manual_seed(0)
    model = contract_model().train()
    x, y = _batch()
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    aalp = tt.create("aalp", attack=tt.create("pgd", steps=1), lam=0.5, p_max=0.25)
    aalp.start_epoch(1, 2)  # p = 0.25
    loss, logs = aalp.objective(model, x, x_adv, y)
    w_head = model.head.weight
    h, h_adv = _features(model, x), _features(model, x_adv)
    z = model.head(h * _direct_mask(h, w_head, y, 4) / 0.75)
    z_adv = model.head(h_adv * _direct_mask(h_adv, w_head, y, 4) / 0.75)
    q = F.softmax(z_adv, 1)[torch.arange(8), y].detach()
    lam_i = 0.5 * q / q.mean()
    expected = ((F.cross_entropy(z, y, reduction="none") + F.cross_entropy(z_adv, y, reduction="none")) / 2).mean()
    expected = expected + (lam_i * ((z - z_adv) ** 2).sum(1)).mean()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-6)
    assert logs["p"] == 0.25
    # both components off: exactly ALP
    plain = tt.create("aalp", attack=tt.create("pgd", steps=1), adaptive=False, guided_dropout=False)
    alp = tt.create("alp", attack=tt.create("pgd", steps=1))
    torch.testing.assert_close(plain.objective(model, x, x_adv, y)[0], alp.objective(model, x, x_adv, y)[0])


def test_head_is_found_or_explained():
    model = contract_model()
    assert find_head(model) is model.head and find_head(model, "fc") is model.fc
    with pytest.raises(ValueError, match="no module named"):
        find_head(model, "classifier")
    with pytest.raises(ValueError, match="nn.Linear"):
        find_head(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValueError, match="p_max"):
        tt.create("aalp", p_max=1.0)
