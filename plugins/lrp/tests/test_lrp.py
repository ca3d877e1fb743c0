import pytest
import torch

import toolkit_core as tt
from toolkit_core.errors import ParameterError
from toolkit_core.testing import check_kernel, check_method, contract_model


@pytest.mark.parametrize("composite", [None, "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_contract(composite):
    check_method("lrp", composite=composite)


def test_kernels_match_reference():
    check_kernel("torchtrust_lrp::stabilized_divide", "torchtrust_lrp.kernels")


def test_stabilized_divide_sign_of_zero_is_one():
    from torchtrust_lrp.kernels import stabilized_divide

    out = stabilized_divide(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, -1.0, 0.0]), 0.5)
    assert torch.allclose(out, torch.tensor([2.0, -2.0 / 3.0, 0.0]))
    assert stabilized_divide(torch.tensor([3.0]), torch.tensor([0.0]), 0.0).tolist() == [0.0]


def test_user_dict_composite_and_unknown_names():
    model = contract_model(bias=False)
    x = torch.rand(2, 1, 16, 16)
    r1 = tt.attribute(model, x, 1, method="lrp", composite={"conv": "lrp_0", "linear": "lrp_0"})
    r2 = tt.attribute(model, x, 1, method="lrp", rule="lrp_0")
    assert torch.allclose(r1, r2)
    with pytest.raises(ParameterError):
        tt.create("lrp", epsilon="big")
    with pytest.raises(ValueError, match="unknown composite"):
        tt.create("lrp", composite="nope")
    with pytest.raises(KeyError, match="no rule named"):
        tt.attribute(model, x, 1, method="lrp", composite={"conv": "lrp_nope"})
