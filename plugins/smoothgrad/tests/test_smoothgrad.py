import pytest
import torch
from torchtrust_smoothgrad import smooth

import toolkit_core as tt
from toolkit_core.testing import ModelSnapshot, check_method, contract_model


def manual(base, model, x, t, samples, sigma, seed):
    """The SmoothGrad average written out: one noisy copy at a time, in the documented draw order."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(x) * samples, *x.shape[1:]), generator=g).view(len(x), samples, *x.shape[1:])
    maps = torch.stack([torch.stack([
        tt.attribute(model, x[i:i + 1] + sigma[i] * noise[i, s], t[i:i + 1], method=base)[0] for s in range(samples)
    ]) for i in range(len(x))])
    return maps  # (B, samples, ...)


@pytest.mark.parametrize("params", [{}, {"base": "gbp", "samples": 3}])
def test_contract(params):
    check_method("smoothgrad", **params)


@pytest.mark.parametrize("base", ["gradient", "gbp"])
def test_equals_the_average_over_noisy_copies(base):
    model = contract_model()
    x = torch.rand(3, 1, 16, 16)
    t = torch.tensor([1, 5, 7])
    sigma = 0.2 * (x.flatten(1).max(1).values - x.flatten(1).min(1).values)
    maps = manual(base, model, x, t, 5, sigma, seed=3)
    for agg, ref in (("mean", maps.mean(1)), ("square", (maps**2).mean(1)),
                     ("var", maps.var(1, unbiased=False))):
        got = tt.attribute(model, x, t, method="smoothgrad", base=base, samples=5, noise=0.2, seed=3, aggregate=agg)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
    capped = tt.attribute(model, x, t, method="smoothgrad", base=base, samples=5, noise=0.2, seed=3,
                          internal_batch_size=4)
    torch.testing.assert_close(capped, maps.mean(1), rtol=1e-4, atol=1e-6)


def test_zero_noise_is_the_base_method_and_nothing_changes():
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x = torch.rand(2, 1, 16, 16)
    x0 = x.clone()
    sg = tt.attribute(model, x, 4, method="smoothgrad", base="lrp", base_params={"epsilon": 0.01}, noise=0.0,
                      samples=3)
    torch.testing.assert_close(sg, tt.attribute(model, x, 4, method="lrp", epsilon=0.01), rtol=1e-5, atol=1e-7)
    snap.assert_unchanged(model)
    assert torch.equal(x, x0)
    with pytest.raises(Exception, match="no method named 'nope'"):
        tt.create("smoothgrad", base="nope")
    with pytest.raises(ValueError, match="cannot wrap itself"):
        tt.create("smoothgrad", base="smoothgrad")


def test_matches_captum_noise_tunnel():
    attr = pytest.importorskip("captum.attr")
    model = contract_model()
    x = torch.rand(3, 1, 16, 16)
    t = torch.tensor([0, 3, 9])
    for kind, agg in (("smoothgrad", "mean"), ("smoothgrad_sq", "square"), ("vargrad", "var")):
        torch.manual_seed(11)
        ref = attr.NoiseTunnel(attr.Saliency(model)).attribute(x, nt_type=kind, nt_samples=6, stdevs=0.1,
                                                                target=t, abs=False)
        got = smooth(tt.create("gradient"), model, x, t, samples=6, noise=0.1, noise_scale="absolute",
                     aggregate=agg, seed=11)
        assert (got - ref).norm() / ref.norm() < 1e-5, kind
