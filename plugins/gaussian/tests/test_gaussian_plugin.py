import torch

import toolkit_core as tt
from toolkit_core.testing import check_method


def test_contract():
    prior = check_method("gaussian", dim=4)
    assert prior.sample(3).shape == (3, 4)
    assert torch.equal(prior.codes, torch.randn(64, 4, generator=torch.Generator().manual_seed(0)))


def test_gaussian_prior_moments():
    prior = tt.create("gaussian", dim=3, seed=1).fit(torch.zeros(10, 2))
    assert torch.equal(prior.codes, torch.randn(10, 3, generator=torch.Generator().manual_seed(1)))
    z = prior.sample(20000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (20000, 3)
    assert z.mean(0).abs().max() < 0.03 and (z.std(0) - 1).abs().max() < 0.03
