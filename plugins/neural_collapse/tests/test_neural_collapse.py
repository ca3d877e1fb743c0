"""Contract of the `neural_collapse` plugin and its numbers against formulas."""

import math

import pytest
import torch
from torch import nn

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method


def test_neural_collapse_contract_and_provider():
    check_method("neural_collapse")
    info = get_info("neural_collapse")
    assert info.provider == "torchtrust-neural-collapse"


# --------------------------------------------------------------- numbers against formulas evaluated directly


def etf_model(c=4, d=4, noise_free=True):
    """one-hot(class) -> features = simplex-ETF row of the class -> head W = M (perfect collapse)."""
    m = math.sqrt(c / (c - 1)) * (torch.eye(c) - torch.ones(c, c) / c)  # (C, C), rows sum to 0
    m = m[:, :d] if d < c else torch.cat([m, torch.zeros(c, d - c)], 1)
    emb = nn.Linear(c, d, bias=False)
    head = nn.Linear(d, c, bias=False)
    with torch.no_grad():
        emb.weight.copy_(m.T)
        head.weight.copy_(m)
    return nn.Sequential(emb, head), m


def onehot_data(c=4, per=8, noise=0.0, seed=0):
    y = torch.arange(c).repeat_interleave(per)
    x = torch.nn.functional.one_hot(y, c).float()
    if noise:
        x = x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, y


def test_nc_is_zero_on_perfectly_collapsed_features():
    model, _ = etf_model()
    out = create("neural_collapse").compute(model, onehot_data())
    for key in ("nc1", "nc2_norm_cv", "nc2_cos_std", "nc2_cos_shift", "nc3", "nc4"):
        assert abs(out[key]) < 1e-10, (key, out[key])


def test_nc1_positive_and_equal_to_trace_formula_with_noise():
    model, _ = etf_model()
    x, y = onehot_data(noise=0.3)
    out = create("neural_collapse").compute(model, (x, y))
    t = model[0](x).detach().double()
    mu = torch.stack([t[y == c].mean(0) for c in range(4)])
    sw = sum(torch.cov(t[y == c].T, correction=0) for c in range(4)) / 4
    sb = (mu - t.mean(0)).T @ (mu - t.mean(0)) / 4
    expected = float(torch.trace(sw @ torch.linalg.pinv(sb)) / 4)
    assert out["nc1"] > 0.01
    assert out["nc1"] == pytest.approx(expected, rel=1e-6)
    assert sum(out[f"nc1/class_{c}"] for c in range(4)) == pytest.approx(out["nc1"], rel=1e-9)
