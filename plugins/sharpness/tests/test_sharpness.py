"""Contract of the `sharpness` plugin (numbers are checked in tests/test_generalization_metrics.py)."""

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


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
