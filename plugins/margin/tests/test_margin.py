"""Contract of the `margin` plugin and its numbers against formulas."""

import math

import pytest
import torch

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method, contract_model, digits_batch


def test_margin_contract_and_provider():
    check_method("margin")
    info = get_info("margin")
    assert info.provider == "torchtrust-margin"


# --------------------------------------------------------------- numbers against formulas evaluated directly


def test_margin_percentile_equals_direct_quantile():
    model = contract_model()
    x, y = digits_batch(50)
    out = create("margin").compute(model, (x, y))
    logits = model(x).detach().double()
    other = logits.clone()
    other[torch.arange(50), y] = -math.inf
    gamma = logits[torch.arange(50), y] - other.max(1).values
    assert out["margin_p10"] == pytest.approx(float(torch.quantile(gamma, 0.1)))
    assert out["margin_median"] == pytest.approx(float(gamma.median()))
