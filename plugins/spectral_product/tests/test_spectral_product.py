"""Contract of the `spectral_product` plugin and its numbers against formulas."""

import pytest
import torch
from torch import nn

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method, small_mlp


def test_spectral_product_contract_and_provider():
    check_method("spectral_product")
    info = get_info("spectral_product")
    assert info.provider == "torchtrust-spectral-product"


# --------------------------------------------------------------- numbers against formulas evaluated directly


def test_spectral_product_equals_svd():
    model = small_mlp(True)
    out = create("spectral_product").compute(model, None)
    svals = [torch.linalg.svdvals(m.weight.double())[0] for m in model if isinstance(m, nn.Linear)]
    assert out["log_spectral_product"] == pytest.approx(float(sum(2 * torch.log(s) for s in svals)))
    assert out["log_frobenius_product"] == pytest.approx(
        float(sum(2 * torch.log(m.weight.double().norm()) for m in model if isinstance(m, nn.Linear))))
    assert out["spectral_norm/1"] == pytest.approx(float(svals[0]))
