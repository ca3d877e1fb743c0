import torch

from toolkit_core.testing import check_kernel, check_method


def test_contract():
    check_method("rectgrad")
    check_method("rectgrad", q=50.0)


def test_kernel_matches_reference():
    check_kernel("torchtrust_rectgrad::rectify", "torchtrust_rectgrad.kernels")


def test_percentile_threshold_equals_torch_quantile():
    from torchtrust_rectgrad.kernels import percentile_threshold, rectify

    s = torch.randn(3, 1001, generator=torch.Generator().manual_seed(0))
    s[:, :10] = 0.5  # ties
    for q in (0.0, 37.5, 50.0, 98.0, 100.0):
        assert torch.allclose(percentile_threshold(s, q), torch.quantile(s, q / 100, dim=1), atol=1e-6)
    a, g = torch.rand(2, 50), torch.randn(2, 50)
    out = rectify(a, g, 90.0)
    kept = (out != 0).sum(1)
    assert (kept == 5).all()  # the top 10% of 50 products
