"""The generalization study stage (Jiang et al. 2019 protocol): its statistics against formulas evaluated
directly, its design, its stopping rule, and a small run end to end with the claims checked on it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from toolkit_core.experiment.anchors import NOT_COMPARABLE, NOT_REPRODUCED, REPRODUCED, gap_claim
from toolkit_core.experiment.gap_study import LEVELS, correlate, design, kendall_tau, mlp, reading, train_to_ce


def _tau_by_hand(a, b) -> float:
    """Kendall's tau-a (no ties): (concordant - discordant) / (n choose 2)."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
    return s / len(pairs)


def test_correlate_matches_kendall_and_the_granulated_mean():
    rng = np.random.default_rng(0)
    groups = [["width", 0]] * 3 + [["lr", 0]] * 3 + [["lr", 1]] * 3
    values, gaps = rng.normal(size=9), rng.normal(size=9)
    c = correlate(list(values), list(gaps), groups, sign=-1.0, n_boot=200)
    assert c["tau_dir"] == pytest.approx(_tau_by_hand(-values, gaps))
    assert c["tau_dir"] == pytest.approx(kendalltau(-values, gaps).statistic)
    width = _tau_by_hand(-values[:3], gaps[:3])
    lr = (_tau_by_hand(-values[3:6], gaps[3:6]) + _tau_by_hand(-values[6:], gaps[6:])) / 2
    assert c["psi_per_factor"] == pytest.approx({"width": width, "lr": lr})
    assert c["psi"] == pytest.approx((width + lr) / 2)
    assert c["tau_ci"][0] <= c["tau_dir"] <= c["tau_ci"][1] and -1 <= c["tau_ci"][0] and c["tau_ci"][1] <= 1
    assert all(math.isnan(x) for x in c["psi_ci"])  # one "width" group: nothing to resample, no interval
    two = correlate(list(values[:6]), list(gaps[:6]), [["width", 0]] * 3 + [["width", 1]] * 3, sign=1.0,
                    n_boot=200)
    assert two["psi_ci"][0] <= two["psi"] <= two["psi_ci"][1]
    # a measure that orders the models exactly like the gap: tau 1, interval above 0 once resampled
    perfect = correlate(list(np.arange(9.0)), list(np.arange(9.0)), groups, sign=1.0, n_boot=200)
    assert perfect["tau_dir"] == 1.0 and perfect["psi"] == 1.0 and reading(perfect) == "predicts the gap"
    flipped = correlate(list(np.arange(9.0)), list(np.arange(9.0)), groups, sign=-1.0, n_boot=200)
    assert flipped["tau_dir"] == -1.0 and reading(flipped) == "ranks the wrong way"
    const = correlate([1.0] * 9, list(gaps), groups, sign=1.0, n_boot=50)
    assert const["tau_dir"] == 0.0 and reading(const) == "constant across the models"
    assert kendall_tau(np.ones(4), np.arange(4.0)) == 0.0


def test_design_groups_differ_in_their_factor_only():
    plan = design(["width", "lr", "train_size"], bases=2, seed=3)
    assert len(plan) == 3 * 2 * 3
    by_group: dict[tuple, list[dict]] = {}
    for item in plan:
        by_group.setdefault(tuple(item["group"]), []).append(item["hp"])
    for (factor, _), hps in by_group.items():
        assert sorted(h[factor] for h in hps) == sorted(LEVELS[factor])
        others = [{k: v for k, v in h.items() if k != factor} for h in hps]
        assert all(o == others[0] for o in others), factor


def test_train_to_ce_stops_at_the_target_training_loss():
    torch.manual_seed(0)
    x = torch.randn(120, 1, 8, 8)
    y = torch.arange(120) % 3
    x[:, 0, 0, 0] += 3.0 * y  # separable: the loss can reach the target
    model = mlp(32, 1, 0.0, classes=3)
    steps, ce = train_to_ce(model, x, y, target=0.05, max_steps=3000, lr=0.05, batch=32)
    with torch.no_grad():
        direct = float(torch.nn.functional.cross_entropy(model.eval()(x), y))
    assert ce == pytest.approx(direct) and ce <= 0.05 and 0 < steps < 3000 and steps % 50 == 0
    steps0, ce0 = train_to_ce(mlp(32, 1, 0.0, classes=3), x, y, target=0.05, max_steps=50, lr=1e-6, batch=32)
    assert steps0 == 50 and ce0 > 0.05  # the step budget ends a run that cannot get there


def test_gap_claim_verdicts():
    res = {"correlations": {"m.k": {"tau_dir": 0.4, "tau_ci": [0.1, 0.6], "psi": -0.1, "psi_ci": [-0.3, 0.2],
                                    "n": 40}}}
    assert gap_claim("generalization", "c", "s", res, "m.k").verdict == REPRODUCED
    assert gap_claim("generalization", "c", "s", res, "m.k", by="psi").verdict == NOT_REPRODUCED
    assert gap_claim("generalization", "c", "s", res, "m.k", predicts=False).verdict == NOT_REPRODUCED
    assert gap_claim("generalization", "c", "s", res, "other").verdict == NOT_COMPARABLE
    assert "tau_dir +0.40 [+0.10, +0.60]" in gap_claim("generalization", "c", "s", res, "m.k").ours


@pytest.mark.slow
def test_a_small_study_end_to_end_with_its_claims(tmp_path):
    from toolkit_core.experiment import Experiment

    cfg = {"stages": ["generalization"], "metrics": [{"name": "margin"}, {"name": "itid"}],
           "generalization": {"factors": ["width", "lr"], "bases": 1, "max_steps": 1500, "bootstrap": 50}}
    res = Experiment.from_dict(cfg, quick=True).run(tmp_path, progress=False)
    g = res["generalization"]
    assert len(g["models"]) == 6 and all(math.isclose(m["gap"], m["train_acc"] - m["test_acc"]) for m in g["models"])
    used = [m for m in g["models"] if m["reached"]]
    assert all(m["train_ce"] <= 0.02 for m in used)
    c = g["correlations"]["margin.margin_p10"]
    values = [-m["values"]["margin.margin_p10"] for m in used]  # higher margin is better: sign flipped
    assert c["tau_dir"] == pytest.approx(kendall_tau(np.array(values), np.array([m["gap"] for m in used])))
    assert {"baseline.param_count", "baseline.inverse_margin", "itid.inv_hard"} <= set(g["correlations"])
    page = (tmp_path / "index.html").read_text()
    assert "Jiang et al. 2019" in page and "the parameter count does not predict" in page
    assert "higher hypothesis invariance (inv_hard) goes with a smaller generalization gap" in page
