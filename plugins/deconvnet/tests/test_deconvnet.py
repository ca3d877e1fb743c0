import torch
from torch import nn

import toolkit_core as tt
from toolkit_core.testing import check_method


def test_contract():
    check_method("deconvnet")


def test_deconvnet_ignores_the_forward_mask():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.randn(5, 3)
    W1, W2 = net[0].weight.detach(), net[2].weight.detach()
    expected = W2[0].clamp(min=0) @ W1  # the same for every sample: no forward mask
    r = tt.attribute(net, x, 0, method="deconvnet")
    assert torch.allclose(r, expected.expand(5, -1), atol=1e-6)
