"""Numbers of `feature_complexity`: exactly the planted duplicates are merged, the function is kept."""

import pytest
import torch
from torch import nn
from torchtrust_feature_complexity import FeatureComplexity, merge_features

from toolkit_core.catalog import get_info
from toolkit_core.models import DigitsCNN
from toolkit_core.modelstate import ModelSnapshot
from toolkit_core.testing import check_method


def test_contract_and_provider():
    check_method("feature_complexity")
    assert get_info("feature_complexity").provider == "torchtrust-feature-complexity"


def _plant_duplicates(linear: nn.Linear, pairs: dict[int, tuple[int, float]]) -> None:
    """Make output ``j`` equal ``s`` x output ``i`` for each ``j: (i, s)``."""
    with torch.no_grad():
        for j, (i, s) in pairs.items():
            linear.weight[j] = s * linear.weight[i]
            linear.bias[j] = s * linear.bias[i]


def test_mlp_with_duplicated_channels_merges_exactly_the_duplicates():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    _plant_duplicates(model[0], {5: (1, 2.0), 9: (1, 0.5), 11: (3, 3.0)})  # 3 redundant of 12
    _plant_duplicates(model[2], {7: (0, 1.5)})  # 1 redundant of 10
    x = torch.randn(256, 6)
    snap = ModelSnapshot.take(model)
    merged, report = merge_features(model, x, tol=1e-6)
    snap.assert_unchanged(model)
    assert report.original == {"0": 12, "2": 10}
    assert report.remaining == {"0": 9, "2": 9}
    assert report.output_change < 1e-6  # float32 rounding only
    torch.testing.assert_close(merged(x), model(x), rtol=1e-5, atol=1e-6)
    # the kept rows are the originals minus the planted copies (in order)
    kept = [k for k in range(12) if k not in (5, 9, 11)]
    torch.testing.assert_close(merged[0].weight, model[0].weight[kept])


def test_negative_scale_is_not_an_equivalence():
    """relu(-z) != -relu(z): a channel that is a negative multiple of another must stay."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    _plant_duplicates(model[0], {4: (0, -1.0)})
    _, report = merge_features(model, torch.randn(128, 4), tol=1e-6)
    assert report.remaining == {"0": 6}


def test_cnn_with_flatten_merges_duplicate_conv_channels():
    torch.manual_seed(2)
    model = DigitsCNN(size=8, width=4, hidden=16).eval()
    conv2 = model.features[3]
    with torch.no_grad():  # channel 6 of the second conv = 2.5 x channel 2 (max pool commutes with s > 0)
        conv2.weight[6] = 2.5 * conv2.weight[2]
        conv2.bias[6] = 2.5 * conv2.bias[2]
    _plant_duplicates(model.fc, {3: (0, 0.25)})
    x = torch.rand(64, 1, 8, 8)
    merged, report = merge_features(model, x, tol=1e-6)
    assert report.remaining == {"features.0": 4, "features.3": 7, "fc": 15}
    assert merged.fc.in_features == 7 * 2 * 2
    torch.testing.assert_close(merged(x), model(x), rtol=1e-5, atol=1e-5)


def test_metric_reports_counts_and_accuracy():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    _plant_duplicates(model[0], {2: (1, 4.0), 6: (4, 1.0)})
    x, y = torch.randn(300, 5), torch.randint(0, 3, (300,))
    x0 = x.clone()
    out = FeatureComplexity(tol=1e-6)(model, (x, y))
    assert torch.equal(x, x0)
    assert out["remaining/0"] == 6 and out["merged/0"] == 2
    assert out["complexity"] == pytest.approx(6 / 8)
    assert out["accuracy_merged"] == out["accuracy"] == pytest.approx(float((model(x).argmax(1) == y).float().mean()))
    # a loose tolerance merges more and may cost accuracy, never less merging
    loose = FeatureComplexity(tol=0.5)(model, (x, y))
    assert loose["remaining/0"] <= 6


def test_branching_model_is_refused_with_a_reason():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.a(x) + x)

    with pytest.raises(ValueError, match="chain"):
        merge_features(Residual(), torch.randn(8, 4))


def test_experiment_variants_declare_the_quick_budget():
    from toolkit_core.methods import Scale

    cls = get_info("feature_complexity").cls
    assert cls.experiment_variants(Scale(quick=True)) == [{"tol": 0.1, "max_samples": 256}]
    assert cls.experiment_variants(Scale(quick=False)) == [{}, {"tol": 0.1}]
    for params in cls.experiment_variants(Scale(quick=True)) + cls.experiment_variants(Scale()):
        cls(**params)  # every declared variant is valid
