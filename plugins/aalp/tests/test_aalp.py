"""AALP (our operational reading): Guided Dropout, the ramp, adaptive weights, and the loss formula."""

from __future__ import annotations

import contextlib

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
def _direct_mask(h, weight, y, k, absolute=True):
    """Reference: per row, python-sort the contributions |h_j W[y, j]| (or signed) and zero the k smallest."""
    mask = torch.ones_like(h)
    for i in range(h.shape[0]):
        c = [((h[i, j] * weight[y[i], j]).item(), j) for j in range(h.shape[1])]
        c = [(abs(v), j) for v, j in c] if absolute else c
        for _, j in sorted(c)[:k]:
            mask[i, j] = 0.0
    return mask


def test_contract_and_registration():
    check_method("aalp")
    info = tt.get_info("aalp")
    assert info.provider == "torchtrust-aalp" and info.kernels == ("torchtrust_alp::weighted_pair_loss",)
    assert {"lam", "p_max", "ramp_epochs", "head", "adaptive", "guided_dropout", "contribution", "rank_by",
            "temperature"} <= {
        p.name for p in info.parameters
    }


@pytest.mark.parametrize("p,width,k", [(0.3, 20, 6), (0.25, 16, 4), (0.3, 64, 19)])
def test_guided_dropout_drops_exactly_the_lowest_contributions(p, width, k):
    g = torch.Generator().manual_seed(width)
    h = torch.randn(6, width, generator=g)
    weight = torch.randn(10, width, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    out, mask = guided_dropout(h, weight, y, p)  # default: |contribution|
    assert torch.equal(mask, _direct_mask(h, weight, y, k))
    assert (mask == 0).sum(1).tolist() == [k] * 6  # floor(p * H) per sample
    torch.testing.assert_close(out, h * mask / (1 - p), atol=0, rtol=0)
    # the dropped features are exactly the ones with the lowest |contribution|
    c = (h * weight[y]).abs()
    assert (c[mask == 0].view(6, k).amax(1) <= c[mask == 1].view(6, width - k).amin(1)).all()
    _, mask_signed = guided_dropout(h, weight, y, p, contribution="signed")
    assert torch.equal(mask_signed, _direct_mask(h, weight, y, k, absolute=False))


def test_guided_dropout_in_the_model_train_only_and_eval_deterministic():
    model = contract_model()
    x, y = _batch()
    aalp = tt.create("aalp", attack=tt.create("pgd", steps=1), p_max=0.25)
    h = _features(model, x)
    yhat = model.head(h).argmax(1)  # the model's own prediction, not the label
    model.train()
    with aalp.dropout_active(model, y):
        out = model(x)
    expected = model.head(h * _direct_mask(h, model.head.weight, yhat, 4) / 0.75)  # hidden=16 -> 4 dropped
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    # the mask does not depend on the labels at all
    with aalp.dropout_active(model, (y + 3) % 10):
        torch.testing.assert_close(model(x), out, atol=0, rtol=0)
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
    mask = _direct_mask(h, w_head, model.head(h).argmax(1), 4)  # ranked on the clean input, predicted class
    z = model.head(h * mask / 0.75)
    z_adv = model.head(h_adv * mask / 0.75)  # the adversarial twin shares the clean sample's mask
    q = F.softmax(model.head(h_adv), 1)[torch.arange(8), y].detach()  # eval-mode pass, no dropout
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


class _ConstantFeatures(torch.nn.Module):
    """Penultimate features that carry no information about x: a learned vector, the same for every input."""

    def __init__(self, width=32):
        super().__init__()
        self.h = torch.nn.Parameter(torch.rand(width, generator=torch.Generator().manual_seed(0)))
        self.head = torch.nn.Linear(width, 10)

    def forward(self, x):
        return self.head(torch.relu(self.h).expand(len(x), -1))


def _toy_train_mode_accuracy(**params):
    """Train the x-independent-feature toy with the AALP objective; train-mode and eval-mode accuracy."""
    torch.manual_seed(0)
    model = _ConstantFeatures()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    aalp = tt.create("aalp", attack=tt.create("pgd", steps=1), p_max=0.5, **params)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x, y = torch.rand(64, 2, generator=g), torch.randint(0, 10, (64,), generator=g)
        model.train()
        loss, _ = aalp.objective(model, x, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = torch.rand(2000, 2, generator=g), torch.randint(0, 10, (2000,), generator=g)
    with torch.no_grad():
        model.train()
        with aalp.dropout_active(model, y):
            train_mode = float((model(x).argmax(1) == y).float().mean())
        model.eval()
        eval_mode = float((model(x).argmax(1) == y).float().mean())
    return train_mode, eval_mode


def test_no_label_leak_on_x_independent_features():
    """Features independent of x: nothing can beat chance (10%) -- unless the dropout mask carries y."""
    for contribution in ("abs", "signed"):
        train_mode, eval_mode = _toy_train_mode_accuracy(contribution=contribution)
        assert train_mode <= 0.15 and eval_mode <= 0.15
    # the first reading (rank by the true class) leaks: the mask alone makes the train-mode logits right
    leak_signed, eval_signed = _toy_train_mode_accuracy(rank_by="label", contribution="signed")
    leak_abs, _ = _toy_train_mode_accuracy(rank_by="label", contribution="abs")
    assert leak_signed >= 0.95 and eval_signed <= 0.15 and leak_abs >= 0.5


def _digits_gap(mode, p=0.3, epochs=4, seed=0):
    """Train a DigitsCNN (8x8 digits) with the AALP objective (FGSM pairs) and either Guided Dropout
    (``mode`` = ``"predicted"`` or ``"label"``) or ordinary dropout at the same rate on the head's input;
    return train-mode minus eval-mode accuracy on the training set."""
    from toolkit_core.data import load_digits
    from toolkit_core.models import DigitsCNN

    torch.manual_seed(seed)
    x, y = load_digits(8, "train").tensors
    model = DigitsCNN(size=8, width=8, hidden=32)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    aalp = tt.create("aalp", attack=tt.create("fgsm", eps=0.1), p_max=p, guided_dropout=mode != "ordinary",
                     rank_by="label" if mode == "label" else "predicted",
                     contribution="signed" if mode == "label" else "abs")
    handle = None
    if mode == "ordinary":
        handle = model.head.register_forward_pre_hook(
            lambda m, args: (F.dropout(args[0], p, True),) if m.training else None)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            model.train()
            loss, _ = aalp.loss(model, x[idx], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        model.train()
        with aalp.dropout_active(model, y) if mode != "ordinary" else contextlib.nullcontext():
            train_mode = float((model(x).argmax(1) == y).float().mean())
        model.eval()
        eval_mode = float((model(x).argmax(1) == y).float().mean())
    if handle is not None:
        handle.remove()
    return train_mode - eval_mode


def test_digits_train_eval_gap_no_larger_than_ordinary_dropout():
    guided, ordinary = _digits_gap("predicted"), _digits_gap("ordinary")
    assert abs(guided) <= abs(ordinary)
    assert _digits_gap("label") >= 0.5  # the leaking reading: train-mode accuracy far above eval-mode
