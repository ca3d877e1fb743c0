"""Generalization metrics: the shared feature statistics of the core, and the contract every metric meets
(state, bad input). Each metric's numbers are tested beside it, in plugins/<name>/tests/."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toolkit_core.features import ClassStatistics, Directions, class_scatter, collect_features, find_head
from toolkit_core.testing import ModelSnapshot, check_kernel, contract_model, digits_batch

METRICS = ("itid", "maxent", "neural_collapse", "sharpness", "path_norm", "spectral_product", "margin")


def create(name, **kw):
    from toolkit_core.catalog import create as _create

    return _create(name, **kw)


# --------------------------------------------------------------------------- core: features and kernel


def test_class_scatter_triton_matches_reference():
    report = check_kernel("torchtrust_features::class_scatter", "toolkit_core.features", dtypes=("float32", "float64"))
    assert len(report) == 6 and all(r["max_abs_err"] < 1e-3 for r in report)


def test_class_statistics_equal_direct_formulas():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(90, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (90,), generator=g)
    counts, sums, outer = class_scatter(t, y, 4)
    for c in range(4):
        tc = t[y == c]
        assert counts[c] == len(tc)
        torch.testing.assert_close(sums[c], tc.sum(0))
        torch.testing.assert_close(outer[c], tc.T @ tc)
    stats = ClassStatistics(4, 5)
    stats.update(t[:40], y[:40])
    stats.update(t[40:], y[40:])  # streaming == one shot
    mu = torch.stack([t[y == c].mean(0) for c in range(4)])
    torch.testing.assert_close(stats.means(), mu)
    within = sum((y == c).sum() / 90 * torch.cov(t[y == c].T, correction=0) for c in range(4))
    torch.testing.assert_close(stats.within(), within)
    centred = mu - t.mean(0)
    torch.testing.assert_close(stats.between(), centred.T @ centred / 4)
    torch.testing.assert_close(stats.total_covariance(), torch.cov(t.T, correction=0))


def test_features_are_the_input_of_the_last_linear_or_a_named_output():
    model = contract_model()
    x, y = digits_batch(8)
    t, logits, yy = collect_features(model, (x, y))
    assert find_head(model)[0] == "head" and t.shape == (8, 16)
    torch.testing.assert_close(model.head(t), logits)
    t_fc, _, _ = collect_features(model, (x, y), feature_layer="fc")
    torch.testing.assert_close(torch.relu(t_fc), t)
    with pytest.raises(ValueError, match="not a submodule"):
        collect_features(model, (x, y), feature_layer="nope")


def test_directions_resolve_breakdown_keys():
    d = Directions(nc1=False, margin=True)
    assert "nc1/class_3" in d and d["nc1/class_3"] is False and d["margin/x/y"] is True
    assert "other/class_1" not in d and "nc2" not in d



# --------------------------------------------------------------------------- contract: state, bad input


def fast(name):
    from toolkit_core.catalog import get_info

    return create(name, **get_info(name).cls.contract_params())


@pytest.mark.parametrize("name", METRICS)
def test_metrics_leave_the_model_unchanged(name):
    model = contract_model().train()  # train mode, a frozen layer and a user hook must all survive
    model.fc.weight.requires_grad_(False)
    model.head.register_forward_hook(lambda m, i, o: None)
    snap = ModelSnapshot.take(model)
    out = fast(name).compute(model, digits_batch(32))
    assert out and all(math.isfinite(v) or v == math.inf for v in out.values())
    snap.assert_unchanged(model)


@pytest.mark.parametrize("name", ("maxent", "neural_collapse"))
def test_model_without_linear_head_needs_feature_layer(name):
    model = nn.Sequential(nn.Conv2d(1, 10, 16), nn.Flatten())
    data = digits_batch(16)
    snap = ModelSnapshot.take(model)
    with pytest.raises(ValueError, match="feature_layer"):
        fast(name).compute(model, data)
    snap.assert_unchanged(model)
    out = create(name, feature_layer="0").compute(model, data)  # named layer: works
    assert out


@pytest.mark.parametrize("name", ("itid", "maxent", "neural_collapse", "sharpness", "path_norm", "margin"))
def test_empty_data_is_a_clear_error(name):
    model = contract_model()
    x, y = digits_batch(8)
    with pytest.raises(ValueError, match="empty"):
        fast(name).compute(model, (x[:0], y[:0]))
