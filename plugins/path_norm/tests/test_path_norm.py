"""Contract of the `path_norm` plugin and its numbers against formulas."""

import pytest
import torch
from torch import nn

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method, small_mlp


def test_path_norm_contract_and_provider():
    check_method("path_norm")
    info = get_info("path_norm")
    assert info.provider == "torchtrust-path-norm"


# --------------------------------------------------------------- numbers against formulas evaluated directly


@pytest.mark.parametrize("bias", [False, True])
def test_path_norm_equals_direct_path_sum(bias):
    model = small_mlp(bias)
    lins = [m for m in model if isinstance(m, nn.Linear)]
    h = torch.ones(6, dtype=torch.float64)
    for lin in lins:
        h = lin.weight.detach().double().pow(2) @ h + (lin.bias.detach().double().pow(2) if bias else 0)
    if not bias:  # the path sum itself: sum over all paths of prod w^2
        w1, w2, w3 = (lin.weight.detach().double().pow(2) for lin in lins)
        ones = torch.ones(6, dtype=torch.float64)
        assert float(h.sum()) == pytest.approx(float(ones[:3] @ w3 @ w2 @ w1 @ ones))
    out = create("path_norm").compute(model, (torch.rand(2, 6), torch.zeros(2, dtype=torch.long)))
    assert out["path_norm"] == pytest.approx(float(h.sum()), rel=1e-6)
