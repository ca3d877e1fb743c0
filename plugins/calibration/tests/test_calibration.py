"""Numbers of the `calibration` metric: hand-computed bins, closed forms, and a calibrated predictor."""

import math

import pytest
import torch
from torch import nn
from torchtrust_calibration import Calibration, calibration_errors, reliability_bins

from toolkit_core.catalog import get_info
from toolkit_core.modelstate import ModelSnapshot
from toolkit_core.testing import check_method


def test_contract_and_provider():
    check_method("calibration")
    assert get_info("calibration").provider == "torchtrust-calibration"


def test_hand_example_equal_width_and_mass():
    # confidences 0.9, 0.8, 0.6, 0.3 (class 0 wins for the first three), labels make two right.
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    out = calibration_errors(probs, y, bins=2)
    # equal width, 2 bins: (0, .5] holds nothing (the 4th sample's confidence is 0.7), (.5, 1] holds all:
    # mean conf = (.9+.8+.6+.7)/4 = .75, acc = 3/4 -> ECE = 0; MCE = 0
    assert out["ece_width"] == pytest.approx(0.0, abs=1e-12)
    assert out["mce"] == pytest.approx(0.0, abs=1e-12)
    # equal mass, 2 bins: sorted conf .6,.7 | .8,.9 -> acc (1+1)/2=1 vs .65 ; (0+1)/2=.5 vs .85
    assert out["ece_mass"] == pytest.approx(0.5 * 0.35 + 0.5 * 0.35)
    brier = ((probs - torch.nn.functional.one_hot(y, 2)) ** 2).sum(1).mean()
    assert out["brier"] == pytest.approx(float(brier))
    assert out["nll"] == pytest.approx(float(torch.nn.functional.nll_loss(probs.log(), y)))
    assert out["accuracy"] == pytest.approx(0.75)


def test_equal_width_bins_match_direct_loop():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 5, generator=g, dtype=torch.float64), 1)
    y = torch.randint(0, 5, (500,), generator=g)
    conf, pred = probs.max(1)
    ece, mce = 0.0, 0.0
    for m in range(10):
        lo, hi = m / 10, (m + 1) / 10
        sel = (conf > lo) & (conf <= hi) if m else (conf <= hi)
        if sel.any():
            gap = abs(float((pred[sel] == y[sel]).double().mean() - conf[sel].mean()))
            ece += int(sel.sum()) / 500 * gap
            mce = max(mce, gap)
    out = calibration_errors(probs, y, bins=10)
    assert out["ece_width"] == pytest.approx(ece, rel=1e-12)
    assert out["mce"] == pytest.approx(mce, rel=1e-12)
    counts = reliability_bins(conf, pred == y, 10, "mass")["count"]
    assert counts.tolist() == [50.0] * 10


def test_perfectly_calibrated_predictor_ece_tends_to_zero():
    """Correctness drawn as Bernoulli(confidence): ECE shrinks like 1/sqrt(n) towards 0."""
    g = torch.Generator().manual_seed(1)
    eces = []
    for n in (1_000, 100_000, 1_000_000):
        conf = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)  # binary: conf in [.5, 1]
        correct = torch.rand(n, generator=g, dtype=torch.float64) < conf
        y = torch.where(correct, 0, 1)
        probs = torch.stack([conf, 1 - conf], 1)
        eces.append(calibration_errors(probs, y, bins=15)["ece_width"])
    assert eces[0] > eces[1] > eces[2]
    assert eces[2] < 3e-3
    # an over-confident predictor (true accuracy = conf - 0.1) keeps an ECE of ~0.1
    n = 200_000
    conf = 0.6 + 0.4 * torch.rand(n, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < conf - 0.1, 0, 1)
    assert calibration_errors(torch.stack([conf, 1 - conf], 1), y)["ece_width"] == pytest.approx(0.1, abs=5e-3)


def test_metric_runs_the_model_and_leaves_it_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train()
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    snap, x0 = ModelSnapshot.take(model), x.clone()
    out = Calibration(bins=5)(model, (x, y))
    snap.assert_unchanged(model)
    assert torch.equal(x, x0)
    with torch.no_grad():
        probs = torch.softmax(model.eval()(x).double(), 1)
    model.train()
    assert out == pytest.approx(calibration_errors(probs, y, bins=5))
    assert math.isfinite(out["nll"])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="bins"):
        Calibration(bins=0)
    with pytest.raises(ValueError, match="probs must be"):
        calibration_errors(torch.rand(4, 2), torch.zeros(3, dtype=torch.long))
