import torch

from toolkit_core.testing import check_kernel, check_method, contract_model


def test_contract():
    check_method("gbp")


def test_kernel_matches_reference():
    check_kernel("torchtrust_gbp::guided_relu_grad", "torchtrust_gbp.kernels")


def test_gbp_map_is_nonnegative_signal_through_relus():
    from torchtrust_gbp.kernels import guided_relu_grad

    g = torch.tensor([-1.0, 2.0, 3.0, -4.0])
    mask = torch.tensor([True, True, False, False])
    assert guided_relu_grad(g, mask).tolist() == [0.0, 2.0, 0.0, 0.0]
    model = contract_model()
    x = torch.rand(2, 1, 16, 16)
    import toolkit_core as tt

    r = tt.attribute(model, x, 1, method="gbp")
    assert r.shape == x.shape and r.abs().sum() > 0
