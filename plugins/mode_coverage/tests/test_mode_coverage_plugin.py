import torch

from toolkit_core.data import GRID_MODES
from toolkit_core.testing import check_method


def test_contract():
    for name in ("modes_captured", "high_quality_fraction", "reverse_kl"):
        check_method(name)


def test_grid_counts():
    metric = check_method("modes_captured", mixture="grid")
    assert metric.compute(None, GRID_MODES[:7].repeat(3, 1)) == {"modes_captured": 7}
    assert metric.compute(None, torch.zeros(4, 2) + 1.0) == {"modes_captured": 0}
