"""Contract of the `sharpness` plugin and its numbers against formulas."""

import pytest
import torch
from torch import nn

from toolkit_core.catalog import create, get_info
from toolkit_core.testing import check_method, digits_batch


def test_sharpness_contract_and_provider():
    check_method("sharpness")
    info = get_info("sharpness")
    assert info.provider == "torchtrust-sharpness"


def test_search_returns_the_cap_when_the_target_is_never_reached():
    import torch
    from torch import nn

    from toolkit_core.catalog import create

    class Constant(nn.Module):  # ignores its weights' noise: the error never rises
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 3)

        def forward(self, x):
            return self.head(torch.zeros(len(x), 2)) * 0

    out = create("sharpness", steps=3, samples=2, sigma_max=1.0).compute(
        Constant(), (torch.rand(8, 2), torch.zeros(8, dtype=torch.long)))
    assert out["mag_sigma"] == 16.0 and out["mag_flatness"] == 1 / 256


# --------------------------------------------------------------- numbers against formulas evaluated directly


def test_sharpness_zero_at_sigma_zero_and_monotone():
    from torchtrust_sharpness import sharpness_curve

    torch.manual_seed(0)
    x, y = digits_batch(128)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    sigmas = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8]
    dev = sharpness_curve(model, (x, y), sigmas, samples=4, criterion="loss")
    assert dev[0] == 0.0
    assert all(b >= a for a, b in zip(dev, dev[1:])) and dev[-1] > 0  # convex loss + antithetic draws
    metric = create("sharpness", target=0.1, criterion="loss", steps=8, samples=4)
    out = metric.compute(model, (x, y))
    s = out["mag_sigma"]
    assert sharpness_curve(model, (x, y), [s], 4, "loss")[0] <= 0.1
    assert out["mag_flatness"] == pytest.approx(1 / s**2)
