"""Generalization metrics (issue 7): numbers checked against formulas evaluated directly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toolkit_core.features import ClassStatistics, Directions, class_scatter, collect_features, find_head
from toolkit_core.testing import ModelSnapshot, check_kernel, contract_model

METRICS = ("itid", "maxent", "neural_collapse", "sharpness", "path_norm", "spectral_product", "margin")


def create(name, **kw):
    from toolkit_core.catalog import create as _create

    return _create(name, **kw)


def digits_batch(n=64, seed=0):
    from toolkit_core.data import load_digits

    ds = load_digits(16, "all")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return ds.tensors[0][idx], ds.tensors[1][idx]


def etf_model(c=4, d=4, noise_free=True):
    """one-hot(class) -> features = simplex-ETF row of the class -> head W = M (perfect collapse)."""
    m = math.sqrt(c / (c - 1)) * (torch.eye(c) - torch.ones(c, c) / c)  # (C, C), rows sum to 0
    m = m[:, :d] if d < c else torch.cat([m, torch.zeros(c, d - c)], 1)
    emb = nn.Linear(c, d, bias=False)
    head = nn.Linear(d, c, bias=False)
    with torch.no_grad():
        emb.weight.copy_(m.T)
        head.weight.copy_(m)
    return nn.Sequential(emb, head), m


def onehot_data(c=4, per=8, noise=0.0, seed=0):
    y = torch.arange(c).repeat_interleave(per)
    x = torch.nn.functional.one_hot(y, c).float()
    if noise:
        x = x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, y


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


# --------------------------------------------------------------------------- neural collapse


def test_nc_is_zero_on_perfectly_collapsed_features():
    model, _ = etf_model()
    out = create("neural_collapse").compute(model, onehot_data())
    for key in ("nc1", "nc2_norm_cv", "nc2_cos_std", "nc2_cos_shift", "nc3", "nc4"):
        assert abs(out[key]) < 1e-10, (key, out[key])


def test_nc1_positive_and_equal_to_trace_formula_with_noise():
    model, _ = etf_model()
    x, y = onehot_data(noise=0.3)
    out = create("neural_collapse").compute(model, (x, y))
    t = model[0](x).detach().double()
    mu = torch.stack([t[y == c].mean(0) for c in range(4)])
    sw = sum(torch.cov(t[y == c].T, correction=0) for c in range(4)) / 4
    sb = (mu - t.mean(0)).T @ (mu - t.mean(0)) / 4
    expected = float(torch.trace(sw @ torch.linalg.pinv(sb)) / 4)
    assert out["nc1"] > 0.01
    assert out["nc1"] == pytest.approx(expected, rel=1e-6)
    assert sum(out[f"nc1/class_{c}"] for c in range(4)) == pytest.approx(out["nc1"], rel=1e-9)


# --------------------------------------------------------------------------- itid


class IgnoresInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 10)

    def forward(self, x):
        return self.head(torch.ones(len(x), 3))


def test_invariance_is_one_for_a_model_that_ignores_its_input():
    out = create("itid").compute(IgnoresInput(), digits_batch(32))
    assert out["inv_hard"] == 1.0 and out["inv_soft"] == pytest.approx(1.0, abs=1e-6)
    assert all(v == 1.0 for k, v in out.items() if k.startswith("inv_hard/"))


def test_invariance_below_one_for_a_transform_sensitive_model_and_bound_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))  # a random pixel-wise linear model
    x, y = digits_batch(64)
    itid = create("itid", transforms=("translate=2,0", "rotate=10", "noise=0.05"))
    out = itid.compute(model, (x, y))
    assert out["inv_hard/translate=2,0"] < 0.9 and out["inv_soft"] < 1.0
    assert out["inv_hard"] == pytest.approx(
        (out["inv_hard/translate=2,0"] + out["inv_hard/rotate=10"] + out["inv_hard/noise=0.05"]) / 3)
    acc = float((model(x).argmax(1) == y).float().mean())
    assert out["accuracy"] == pytest.approx(acc)
    assert out["bound"] == pytest.approx((1 - acc) + (1 - out["inv_hard"]) + math.sqrt(math.log(2 / 0.05) / 128))
    per_class = [out[f"inv_hard/class_{c}"] for c in range(10) if f"inv_hard/class_{c}" in out]
    assert min(per_class) <= out["inv_hard"] <= max(per_class)


def test_integer_translation_is_an_exact_shift():
    from torchtrust_itid import transforms as T

    x = torch.rand(3, 1, 8, 8)
    shifted = T.apply(x, T.parse("translate=2,0"))
    expected = torch.zeros_like(x)
    expected[..., 2:] = x[..., :-2]
    torch.testing.assert_close(shifted, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(T.apply(x, T.parse("rotate=0")), x)
    with pytest.raises(ValueError, match="unknown transform"):
        T.parse("shear=3")


# --------------------------------------------------------------------------- itid_enhance


def test_itid_enhance_trains_on_the_worst_candidate():
    model = contract_model().train()
    x, y = digits_batch(8)
    a, b = create("itid_enhance", k=3, seed=5), create("itid_enhance", k=3, seed=5)
    cands = a._candidates(x)
    with torch.no_grad():
        model.eval()
        p = torch.softmax(model(x), 1)
        moves = torch.stack([0.5 * (torch.softmax(model(c), 1) - p).abs().sum(1) for c in cands])
        model.train()
    chosen, move = b.worst_of_k(model, x)
    torch.testing.assert_close(move, moves.max(0).values)
    torch.testing.assert_close(chosen, cands[moves.argmax(0), torch.arange(8)])
    loss, logs = b.loss(model, x, y)
    assert torch.isfinite(loss) and model.training and logs["tv_move"] >= 0


def test_itid_enhance_composes_with_a_training_loop():
    torch.manual_seed(0)
    x, y = digits_batch(64)
    model = contract_model().train()
    defense = create("itid_enhance", k=2)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(8):
        loss, _ = defense.loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_itid_enhance_with_toolkit_fit():
    try:
        from toolkit_core.training import fit
    except ImportError:  # pragma: no cover - the training loop ships with the core
        pytest.skip("toolkit_core.training.fit is not available")
    x, y = digits_batch(64)
    model = contract_model()
    defense = create("itid_enhance", k=2)
    history = fit(model, (x, y), defense=defense, epochs=2, batch_size=32, lr=1e-2, progress=False)
    assert history is not None and all(torch.isfinite(p).all() for p in model.parameters())
    state = defense.state_dict()
    other = create("itid_enhance", k=2, seed=99)
    other.load_state_dict(state)
    torch.testing.assert_close(other._candidates(x[:4]), defense._candidates(x[:4]))


# --------------------------------------------------------------------------- maxent


def test_total_correlation_matches_closed_form():
    from torchtrust_maxent.methods import total_correlation

    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 5, generator=g, dtype=torch.float64)
    assert abs(total_correlation(torch.cov(z.T), shrinkage=1e-6)) < 0.01
    values = []
    for rho in (0.0, 0.3, 0.6, 0.9):
        cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64) * 3.0  # scale must not matter
        tc = total_correlation(cov, shrinkage=1e-9)
        assert tc == pytest.approx(-0.5 * math.log(1 - rho**2), abs=1e-6)
        values.append(tc)
    assert values == sorted(values) and values[0] < values[-1]


def test_maxent_gap_is_model_minus_probe_and_redundancy_grows_with_correlation():
    model = contract_model()
    out = create("maxent", probe_steps=30).compute(model, digits_batch(128))
    assert out["sufficiency_gap"] == pytest.approx(out["ce_model_heldout"] - out["ce_probe_heldout"])
    assert 0 <= out["probe_accuracy"] <= 1 and out["redundancy_global"] >= 0
    # feature redundancy: duplicated (correlated) features have higher total correlation
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 2, (400,), generator=torch.Generator().manual_seed(1))
    indep = nn.Sequential(nn.Identity(), nn.Linear(3, 2))
    mix = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        mix.weight.copy_(torch.tensor([[1.0, 0, 0], [0.9, 0.45, 0], [0, 0, 1.0]]))
    corr = nn.Sequential(mix, nn.Linear(3, 2))
    a = create("maxent").compute(indep, (x, y))
    b = create("maxent").compute(corr, (x, y))
    assert a["redundancy_global"] < 0.02 < b["redundancy_global"]
    rho = 0.9 / math.sqrt(0.81 + 0.45**2)
    assert b["redundancy_global"] == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.05)


# --------------------------------------------------------------------------- sharpness


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


# --------------------------------------------------------------------------- norms and margin


def small_mlp(bias):
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=bias), nn.ReLU(), nn.Linear(5, 4, bias=bias),
                         nn.ReLU(), nn.Linear(4, 3, bias=bias))


@pytest.mark.parametrize("bias", [False, True])
def test_path_norm_equals_direct_path_sum(bias):
    model = small_mlp(bias)
    lins = [m for m in model if isinstance(m, nn.Linear)]
    h = torch.ones(6, dtype=torch.float64)
    for lin in lins:
        h = lin.weight.detach().double().pow(2) @ h + (lin.bias.detach().double().pow(2) if bias else 0)
    if not bias:  # the path sum itself: sum over all paths of prod w^2
        w1, w2, w3 = (lin.weight.detach().double().pow(2) for lin in lins)
        ones = torch.ones(6, dtype=torch.float64)
        assert float(h.sum()) == pytest.approx(float(ones[:3] @ w3 @ w2 @ w1 @ ones))
    out = create("path_norm").compute(model, (torch.rand(2, 6), torch.zeros(2, dtype=torch.long)))
    assert out["path_norm"] == pytest.approx(float(h.sum()), rel=1e-6)


def test_spectral_product_equals_svd():
    model = small_mlp(True)
    out = create("spectral_product").compute(model, None)
    svals = [torch.linalg.svdvals(m.weight.double())[0] for m in model if isinstance(m, nn.Linear)]
    assert out["log_spectral_product"] == pytest.approx(float(sum(2 * torch.log(s) for s in svals)))
    assert out["log_frobenius_product"] == pytest.approx(
        float(sum(2 * torch.log(m.weight.double().norm()) for m in model if isinstance(m, nn.Linear))))
    assert out["spectral_norm/1"] == pytest.approx(float(svals[0]))


def test_margin_percentile_equals_direct_quantile():
    model = contract_model()
    x, y = digits_batch(50)
    out = create("margin").compute(model, (x, y))
    logits = model(x).detach().double()
    other = logits.clone()
    other[torch.arange(50), y] = -math.inf
    gamma = logits[torch.arange(50), y] - other.max(1).values
    assert out["margin_p10"] == pytest.approx(float(torch.quantile(gamma, 0.1)))
    assert out["margin_median"] == pytest.approx(float(gamma.median()))


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
