"""Faithfulness metrics: direct formulas on small models, and Quantus 0.6 where it has the same metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import toolkit_core as tt
from toolkit_core.analysis import faithfulness as F
from toolkit_core.testing import ModelSnapshot, contract_model


def linear_model(seed=0, c=1, hw=6):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * hw * hw, 4)).double().eval()


def test_deletion_curve_of_exact_contributions_on_a_linear_model():
    model = linear_model()
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    t = torch.tensor([0, 3, 1])
    w = model[1].weight[t].view(3, 1, 6, 6)
    contrib = x * w  # f_t(x) - f_t(baseline 0) split exactly over pixels
    res = F.insertion_deletion(model, x, t, contrib, mode="deletion", step=5, output="logit")
    f = model(x).gather(1, t[:, None])[:, 0]
    order = contrib.flatten(1).argsort(1, descending=True)
    sorted_c = contrib.flatten(1).gather(1, order)
    counts = [min(36, 5 * k) for k in range(math.ceil(36 / 5) + 1)]
    expected = torch.stack([f - sorted_c[:, :n].sum(1) for n in counts], 1)
    torch.testing.assert_close(res.values, expected)
    n = len(counts) - 1
    torch.testing.assert_close(res.auc, (expected.sum(1) - expected[:, 0] / 2 - expected[:, -1] / 2) / n)
    assert res.fractions[0] == 0 and res.fractions[-1] == 1
    # insertion from the baseline: the mirror image, ending at f(x)
    ins = F.insertion_deletion(model, x, t, contrib, mode="insertion", step=5, output="logit")
    b = model[1].bias[t]
    torch.testing.assert_close(ins.values, torch.stack([b + sorted_c[:, :n].sum(1) for n in counts], 1))
    # the exact contributions delete faster than a random ranking (lower deletion AUC)
    rnd = F.insertion_deletion(model, x, t, torch.rand_like(x), mode="deletion", step=5, output="logit")
    assert (res.auc <= rnd.auc + 1e-12).all()


def test_pixel_flipping_is_elementwise_and_one_channel_maps_broadcast():
    model = linear_model(c=2)
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    a = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    res = F.pixel_flipping(model, x, 1, a, features_in_step=7, baseline=0.5, output="logit")
    d = 72
    ranks = torch.sort(a.expand_as(x).flatten(1), dim=1, descending=True, stable=True).indices
    for k, n in enumerate(min(d, 7 * k) for k in range(math.ceil(d / 7) + 1)):
        xk = x.flatten(1).clone()
        xk.scatter_(1, ranks[:, :n], 0.5)
        torch.testing.assert_close(res.values[:, k], model(xk.view_as(x))[:, 1])


def test_region_perturbation_grid_and_aopc():
    model = linear_model(hw=7)
    x = torch.rand(2, 1, 7, 7, dtype=torch.float64)
    a = torch.randn(2, 1, 7, 7, dtype=torch.float64)
    res = F.region_perturbation(model, x, 2, a, patch_size=3, regions=5, output="logit")
    # 7 px in squares of 3 with Quantus' centred padding (1 before, 1 after): [0:2], [2:5], [5:7]
    edges = [(0, 2), (2, 5), (5, 7)]
    for i in range(2):
        sums = {(r, c): float(a[i, 0, r0:r1, c0:c1].sum()) for r, (r0, r1) in enumerate(edges)
                for c, (c0, c1) in enumerate(edges)}
        order = sorted(sums, key=lambda k: -sums[k])
        xk = x[i:i + 1].clone()
        for k in range(6):
            torch.testing.assert_close(res.values[i, k], model(xk)[0, 2])
            if k < 5:
                r, c = order[k]
                xk[..., edges[r][0]:edges[r][1], edges[c][0]:edges[c][1]] = 0
    torch.testing.assert_close(res.extra["aopc"], (res.values[:, :1] - res.values).mean(1))


def test_noisy_linear_imputation_solves_the_neighbour_equations():
    h = w = 9
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = (0.3 * yy - 0.2 * xx + 1)[None, None].repeat(2, 3, 1, 1)
    removed = torch.zeros(2, h, w, dtype=torch.bool)
    removed[0, 2:6, 3:7] = True  # interior block: a linear image is reproduced exactly
    removed[1, ::2, 1::3] = True
    removed[1, 0, 0] = True
    out = F.noisy_linear_imputation(ramp, removed, noise=0.0)
    torch.testing.assert_close(out[0], ramp[0])
    # every imputed pixel is the weighted mean of its in-image neighbours (border weights renormalized)
    wts = {(1, 1): 1 / 12, (0, 1): 1 / 6, (-1, 1): 1 / 12, (1, -1): 1 / 12, (0, -1): 1 / 6, (-1, -1): 1 / 12,
           (1, 0): 1 / 6, (-1, 0): 1 / 6}
    for i, j in removed[1].nonzero().tolist():
        num, den = 0.0, 0.0
        for (dy, dx), wt in wts.items():
            if 0 <= i + dy < h and 0 <= j + dx < w:
                num, den = num + wt * out[1, :, i + dy, j + dx], den + wt
        torch.testing.assert_close(out[1, :, i, j], num / den)
    assert torch.equal(out[1][:, ~removed[1]], ramp[1][:, ~removed[1]])
    noisy = F.noisy_linear_imputation(ramp, removed, noise=0.5, generator=torch.Generator().manual_seed(0))
    diff = (noisy - out)[1][:, removed[1]]
    assert 0.3 < float(diff.std()) < 0.7


def test_road_morf_and_lerf_on_a_linear_model():
    model = linear_model()
    x = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    t = model(x).argmax(1)
    a = x * model[1].weight[t].view(4, 1, 6, 6)
    res = F.road(model, x, t, a, percentages=(0, 50), noise=0.0)
    assert res.morf_accuracy[0] == 1 and res.lerf_accuracy[0] == 1
    assert res.morf_correct.shape == (4, 2) and res.morf_probability.shape == (4, 2)
    torch.testing.assert_close(res.morf_probability[:, 0], model(x).softmax(1).gather(1, t[:, None])[:, 0])
    for order, probs in (("morf", res.morf_probability), ("lerf", res.lerf_probability)):
        ranks = torch.sort(a.flatten(1), dim=1, descending=order == "morf", stable=True).indices
        removed = torch.zeros(4, 36, dtype=torch.bool).scatter_(1, ranks[:, :18], True).view(4, 6, 6)
        expected = model(F.noisy_linear_imputation(x, removed, noise=0.0)).softmax(1).gather(1, t[:, None])[:, 0]
        torch.testing.assert_close(probs[:, 1], expected)


def test_max_sensitivity_closed_form_and_sparseness_formula():
    model = linear_model()
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    pert = torch.rand(5, 2, 1, 6, 6, dtype=torch.float64) * 0.2 - 0.1
    w = model[1].weight[1].view(1, 1, 6, 6)
    got = F.max_sensitivity(model, x, 1, "input_x_gradient", perturbations=pert)
    expected = ((pert * w).flatten(2).norm(dim=2) / (x * w).flatten(1).norm(dim=1)).amax(0)
    torch.testing.assert_close(got, expected)
    assert F.max_sensitivity(model, x, 1, "gradient", samples=3).abs().max() < 1e-12  # constant gradient
    a = torch.tensor([[0.0, 0.0, 0.0, 5.0], [1.0, 1.0, 1.0, 1.0], [3.0, -1.0, 0.0, 2.0]])
    v = a.abs() / a.abs().amax(1, keepdim=True) + 1e-7
    v = v.sort(1).values.double()
    i = torch.arange(1, 5, dtype=torch.float64)
    torch.testing.assert_close(F.sparseness(a), ((2 * i - 5) * v).sum(1) / (4 * v.sum(1)))
    assert abs(float(F.sparseness(a)[0]) - 0.75) < 1e-6 and abs(float(F.sparseness(a)[1])) < 1e-6


def test_report_ranks_methods_with_error_bars_and_leaves_everything_unchanged():
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x = torch.rand(4, 1, 16, 16)
    x0 = x.clone()
    rep = F.evaluate_faithfulness(model, x, None, ["gradient", "input_x_gradient"], steps=4, regions=4,
                                  road_percentages=(20, 60), sensitivity_samples=2)
    assert set(rep.metrics()) == set(F.DIRECTIONS)
    for m in rep.methods:
        for k in rep.metrics():
            assert rep.values[m][k].shape == (4,)
            assert math.isfinite(rep.mean(m, k)) and rep.sem(m, k) >= 0
    r = rep.ranking()["sparseness"]
    assert rep.mean(r[0], "sparseness") >= rep.mean(r[1], "sparseness")
    ranks = rep.mean_rank()
    assert all(1 <= v <= 2 for v in ranks.values()) and abs(sum(ranks.values()) - 3) < 1e-9
    assert "mean rank" in rep.table()
    snap.assert_unchanged(model)
    assert torch.equal(x, x0)
    with pytest.raises(ValueError, match="pass a map of x's shape"):
        F.pixel_flipping(model, x, 0, torch.rand(4, 2, 16, 16))
    with pytest.raises(ValueError, match="baseline of shape"):
        F.insertion_deletion(model, x, 0, torch.rand_like(x), baseline=torch.zeros(3))


# --------------------------------------------------------------------------- Quantus 0.6


@pytest.fixture(scope="module")
def digits_batch():
    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model

    model = digits_model()
    x, y = load_digits(16, "test", seed=0).tensors
    x, y = x[:6], y[:6]
    return model, x, y, tt.attribute(model, x, y, method="gradient")


@pytest.mark.slow
def test_agrees_with_quantus(digits_batch):
    quantus = pytest.importorskip("quantus")
    model, x, y, a = digits_batch
    xn, yn, an = x.numpy(), y.numpy(), a.numpy()
    kw = {"normalise": False, "disable_warnings": True}
    pf = quantus.PixelFlipping(features_in_step=8, perturb_baseline=0.0, **kw)
    ref = np.array(pf(model, xn, yn, an, device="cpu"))
    assert np.abs(F.pixel_flipping(model, x, y, a, features_in_step=8).values[:, 1:].numpy() - ref).max() < 1e-4
    ref = np.array(quantus.RegionPerturbation(patch_size=3, regions_evaluation=10, perturb_baseline=0.0, **kw)(
        model, xn, yn, an, device="cpu"))
    ours = F.region_perturbation(model, x, y, a, patch_size=3, regions=10).extra["drops"][:, 1:]
    assert np.abs(ours.numpy() - ref).max() < 1e-4
    road = quantus.ROAD(percentages=[10, 40, 70], noise=0.0, **kw)
    road(model, xn, yn, an, device="cpu")
    ours = F.road(model, x, y, a, percentages=(10, 40, 70), noise=0.0, orders=("morf",)).morf_accuracy
    assert np.abs(ours.numpy() - np.array(list(road.evaluation_scores.values()))).max() < 1e-4
    ref = np.array(quantus.Sparseness(disable_warnings=True)(model, xn, yn, an, device="cpu"))
    assert np.abs(F.sparseness(a).numpy() - ref).max() < 1e-4


@pytest.mark.slow
def test_imputation_and_max_sensitivity_agree_with_quantus(digits_batch):
    quantus = pytest.importorskip("quantus")
    from quantus.functions.perturb_func import noisy_linear_imputation

    model, x, y, a = digits_batch
    removed = torch.rand(len(x), 16, 16, generator=torch.Generator().manual_seed(0)) < 0.4
    ours = F.noisy_linear_imputation(x, removed, noise=0.0)
    for i in range(len(x)):
        idx = np.nonzero(removed[i].reshape(-1).numpy())[0]
        ref = noisy_linear_imputation(x[i].numpy().astype(np.float64), indices=idx, noise=0.0)
        assert np.abs(ours[i].numpy() - ref).max() < 1e-4

    def explain(model, inputs, targets, **kw):
        return tt.attribute(model, torch.as_tensor(inputs), torch.as_tensor(targets), method="gradient").numpy()

    np.random.seed(5)
    pert = np.stack([np.random.uniform(-0.05, 0.05, size=(len(x), 256)) for _ in range(4)])
    np.random.seed(5)
    ref = np.array(quantus.MaxSensitivity(nr_samples=4, lower_bound=0.05, disable_warnings=True)(
        model, x.numpy(), y.numpy(), a.numpy(), explain_func=explain, device="cpu"))
    ours = F.max_sensitivity(model, x, y, "gradient", perturbations=torch.as_tensor(pert, dtype=torch.float32).view(
        4, len(x), 1, 16, 16))
    assert np.abs(ours.numpy() - ref).max() < 1e-4
