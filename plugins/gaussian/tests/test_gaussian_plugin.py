import torch

from toolkit_core.testing import check_method


def test_contract():
    prior = check_method("gaussian", dim=4)
    assert prior.sample(3).shape == (3, 4)
    assert torch.equal(prior.codes, torch.randn(64, 4, generator=torch.Generator().manual_seed(0)))
