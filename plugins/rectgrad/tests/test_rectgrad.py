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


def test_sampled_percentile_is_exact():
    """Rows long enough for the sampled selection: equal to the full selection and to torch.quantile,
    with ties, mostly-zero rows, negative values, and a sample rigged to mislead (fallback path)."""
    from torchtrust_rectgrad import kernels as k

    gen = torch.Generator().manual_seed(0)
    n = 8 * k.SAMPLE_SIZE + 7
    dense = torch.randn(3, n, generator=gen)
    sparse = torch.zeros(3, n)
    sparse[:, :400] = torch.rand(3, 400, generator=gen)  # 98th percentile falls on the zeros
    ties = torch.randint(0, 5, (3, n), generator=gen).float()
    relu_like = torch.rand(3, n, generator=gen).clamp(min=0.5) * torch.randn(3, n, generator=gen)
    rigged = torch.randn(3, n, generator=gen)
    rigged[:, k.sample_index(n, rigged.device)] = 100.0  # the sample says the top is huge: bound fails
    for s in (dense, sparse, ties, relu_like, rigged):
        for q in (0.5, 2.0, 50.0, 97.3, 98.0, 99.99, 100.0):
            fast = k.percentile_threshold(s, q)
            assert torch.equal(fast, k.exact_threshold(s, q)), q
            # torch.quantile computes the rank q (n - 1) in the input's dtype; float64 is the reference
            expected = torch.quantile(s.double(), q / 100, dim=1).float()
            assert torch.allclose(fast, expected, rtol=1e-5, atol=1e-6), q
