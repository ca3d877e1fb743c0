"""Contract of the `itid` plugin and its numbers against formulas."""

import math

import pytest
import torch
from torch import nn

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method, digits_batch


def test_itid_contract_and_provider():
    check_method("itid")
    info = get_info("itid")
    assert info.provider == "torchtrust-itid"


def test_transform_specs_are_validated():
    import pytest

    from toolkit_core.catalog import create

    with pytest.raises(ValueError, match="unknown transform"):
        create("itid", transforms=("blur=3",))
    with pytest.raises(ValueError, match="at least one transform"):
        create("itid", transforms=())


# --------------------------------------------------------------- numbers against formulas evaluated directly


class IgnoresInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 10)

    def forward(self, x):
        return self.head(torch.ones(len(x), 3))


def test_invariance_is_one_for_a_model_that_ignores_its_input():
    out = create("itid").compute(IgnoresInput(), digits_batch(32))
    assert out["inv_hard"] == 1.0 and out["inv_soft"] == pytest.approx(1.0, abs=1e-6)
    assert all(v == 1.0 for k, v in out.items() if k.startswith("inv_hard/"))


def test_invariance_below_one_for_a_transform_sensitive_model_and_bound_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))  # a random pixel-wise linear model
    x, y = digits_batch(64)
    itid = create("itid", transforms=("translate=2,0", "rotate=10", "noise=0.05"))
    out = itid.compute(model, (x, y))
    assert out["inv_hard/translate=2,0"] < 0.9 and out["inv_soft"] < 1.0
    assert out["inv_hard"] == pytest.approx(
        (out["inv_hard/translate=2,0"] + out["inv_hard/rotate=10"] + out["inv_hard/noise=0.05"]) / 3)
    acc = float((model(x).argmax(1) == y).float().mean())
    assert out["accuracy"] == pytest.approx(acc)
    assert out["bound"] == pytest.approx((1 - acc) + (1 - out["inv_hard"]) + math.sqrt(math.log(2 / 0.05) / 128))
    per_class = [out[f"inv_hard/class_{c}"] for c in range(10) if f"inv_hard/class_{c}" in out]
    assert min(per_class) <= out["inv_hard"] <= max(per_class)


def test_integer_translation_is_an_exact_shift():
    from torchtrust_itid import transforms as T

    x = torch.rand(3, 1, 8, 8)
    shifted = T.apply(x, T.parse("translate=2,0"))
    expected = torch.zeros_like(x)
    expected[..., 2:] = x[..., :-2]
    torch.testing.assert_close(shifted, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(T.apply(x, T.parse("rotate=0")), x)
    with pytest.raises(ValueError, match="unknown transform"):
        T.parse("shear=3")
