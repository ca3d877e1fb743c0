"""Contract of the `maxent` plugin and its numbers against formulas."""

import math

import pytest
import torch
from torch import nn

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method, contract_model, digits_batch


def test_maxent_contract_and_provider():
    check_method("maxent")
    info = get_info("maxent")
    assert info.provider == "torchtrust-maxent"


# --------------------------------------------------------------- numbers against formulas evaluated directly


def test_total_correlation_matches_closed_form():
    from torchtrust_maxent.methods import total_correlation

    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 5, generator=g, dtype=torch.float64)
    assert abs(total_correlation(torch.cov(z.T), shrinkage=1e-6)) < 0.01
    values = []
    for rho in (0.0, 0.3, 0.6, 0.9):
        cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64) * 3.0  # scale must not matter
        tc = total_correlation(cov, shrinkage=1e-9)
        assert tc == pytest.approx(-0.5 * math.log(1 - rho**2), abs=1e-6)
        values.append(tc)
    assert values == sorted(values) and values[0] < values[-1]


def test_maxent_gap_is_model_minus_probe_and_redundancy_grows_with_correlation():
    model = contract_model()
    out = create("maxent", probe_steps=30).compute(model, digits_batch(128))
    assert out["sufficiency_gap"] == pytest.approx(out["ce_model_heldout"] - out["ce_probe_heldout"])
    assert 0 <= out["probe_accuracy"] <= 1 and out["redundancy_global"] >= 0
    # feature redundancy: duplicated (correlated) features have higher total correlation
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 2, (400,), generator=torch.Generator().manual_seed(1))
    indep = nn.Sequential(nn.Identity(), nn.Linear(3, 2))
    mix = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        mix.weight.copy_(torch.tensor([[1.0, 0, 0], [0.9, 0.45, 0], [0, 0, 1.0]]))
    corr = nn.Sequential(mix, nn.Linear(3, 2))
    a = create("maxent").compute(indep, (x, y))
    b = create("maxent").compute(corr, (x, y))
    assert a["redundancy_global"] < 0.02 < b["redundancy_global"]
    rho = 0.9 / math.sqrt(0.81 + 0.45**2)
    assert b["redundancy_global"] == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.05)
