"""Tests of toolkit_core.analysis: similarity measures, randomization, alignment, convergence, sufficiency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolkit_core.analysis import (
    cascading_randomization,
    compare_maps,
    cosine_similarity_convergence,
    hog_spearman,
    input_alignment,
    key_information_sufficiency,
    spearman,
    ssim,
    ssim_sign_flip,
)
from toolkit_core.analysis._common import find_blocks
from toolkit_core.analysis.sufficiency import keep_top_k
from toolkit_core.data import load_digits
from toolkit_core.errors import UnknownMethodError
from toolkit_core.models import MLP
from toolkit_core.models import digits_model as trained_digits_model
from toolkit_core.modelstate import ModelSnapshot

HAS_GBP = True
try:  # the gbp plugin is installed in CI (requirements.txt); skip its orderings if it is not
    from toolkit_core.catalog import get_info

    get_info("gbp")
except Exception:  # pragma: no cover - depends on the environment
    HAS_GBP = False
needs_gbp = pytest.mark.skipif(not HAS_GBP, reason="the gbp plugin is not installed")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor]:
    """A DigitsCNN trained for a few seconds (2 epochs on 16x16 digits), and 8 test images."""
    model = trained_digits_model(width=6, hidden=24, epochs=2, lr=1e-2, batch_size=128)
    x, y = load_digits(16, "train").tensors
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc > 0.6, f"the tiny digits CNN did not train (accuracy {acc:.2f})"
    xt, _ = load_digits(16, "test").tensors
    return model, xt[:8].clone()


def _snap_and_flags(model: nn.Module):
    return ModelSnapshot.take(model), [m.inplace for m in model.modules() if hasattr(m, "inplace")]


def _assert_same(model, snap_flags):
    snap, flags = snap_flags
    snap.assert_unchanged(model)
    assert [m.inplace for m in model.modules() if hasattr(m, "inplace")] == flags


# --------------------------------------------------------------------------- similarity measures


def test_ssim_identical_is_one_and_noise_near_zero():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 32, 32, generator=g)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, 5 * a + 2) == pytest.approx(1.0, abs=1e-9)  # min-max scaling removes scale and shift
    vals = [ssim(torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)) for _ in range(5)]
    # near 0: only the stabilizing constant C2 / (var_a + var_b + C2) ~ 0.02 and sampling noise remain
    assert abs(float(np.mean(vals))) < 0.06 and max(abs(v) for v in vals) < 0.1


def test_ssim_matches_the_formula_on_a_single_window():
    # a 7x7 map is one 7x7 window: SSIM is the closed formula with sample (co)variances (ddof=1)
    g = np.random.default_rng(1)
    a, b = g.random((7, 7)), g.random((7, 7))
    sa, sb = (a - a.min()) / np.ptp(a), (b - b.min()) / np.ptp(b)
    ma, mb = sa.mean(), sb.mean()
    va, vb = sa.var(ddof=1), sb.var(ddof=1)
    cov = ((sa - ma) * (sb - mb)).sum() / (sa.size - 1)
    c1, c2 = 0.01**2, 0.03**2
    want = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    assert ssim(a, b) == pytest.approx(want, rel=1e-9)


def test_sign_flip_spearman_and_hog():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(1, 24, 24, generator=g)
    assert ssim(a, -a) < 0.5
    assert ssim_sign_flip(a, -a) == pytest.approx(1.0, abs=1e-12)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, -a, absolute=True) == pytest.approx(1.0)
    assert hog_spearman(a, a) == pytest.approx(1.0)
    assert math.isnan(spearman(torch.zeros(8, 8), a[0, :8, :8]))  # undefined for a constant map
    # channels are summed before comparing
    b = torch.randn(3, 24, 24, generator=g)
    assert ssim(b, b.sum(0)) == pytest.approx(1.0)
    assert set(compare_maps(a, a)) == {"ssim", "ssim_flip", "spearman_abs", "spearman", "hog_spearman"}
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(8, 8), torch.zeros(9, 9))


# --------------------------------------------------------------------------- cascading randomization


def test_blocks_found_from_the_logits_down(digits_model):
    model, x = digits_model
    assert [b for b, _ in find_blocks(model, x)] == ["head", "fc", "features.3", "features.0"]


def test_randomization_leaves_model_unchanged_and_is_seeded(digits_model):
    model, x = digits_model
    before = _snap_and_flags(model)
    r1 = cascading_randomization(model, x[:3], None, ["gradient"], seed=3, max_blocks=2)
    r2 = cascading_randomization(model, x[:3], None, ["gradient"], seed=3, max_blocks=2)
    ind = cascading_randomization(model, x[:3], None, ["gradient"], order="independent", seed=3, max_blocks=2)
    _assert_same(model, before)
    assert r1.blocks == ["head", "fc"]
    np.testing.assert_array_equal(r1.scores["gradient"]["ssim"], r2.scores["gradient"]["ssim"])
    # step 0 randomizes only the top block in both orders (same seed) -> identical scores
    np.testing.assert_allclose(ind.scores["gradient"]["ssim"][0], r1.scores["gradient"]["ssim"][0])
    assert r1.target == model(x[:3]).argmax(1).tolist()
    d = r1.to_dict()
    assert d["blocks"] == ["head", "fc"] and len(d["methods"]["gradient"]["ssim"]["mean"]) == 2
    assert "gradient" in r1.table()


def test_randomizing_nothing_that_matters_gives_similarity_one():
    # a block whose output is unused leaves every attribution unchanged: all measures are exactly 1
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = MLP((16, 8, 3))
            self.unused = nn.Linear(16, 2)

        def forward(self, x):
            _ = self.unused(x.flatten(1))
            return self.body(x)

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.rand(2, 1, 4, 4)
    r = cascading_randomization(net, x, 0, "gradient", blocks=["unused"])
    assert r.mean("gradient", "ssim") == [pytest.approx(1.0)]
    assert r.mean("gradient", "spearman") == [pytest.approx(1.0)]


@needs_gbp
def test_gbp_survives_top_layer_randomization_better_than_gradient(digits_model):
    model, x = digits_model
    before = _snap_and_flags(model)
    r = cascading_randomization(model, x, None, ["gradient", "gbp"], max_blocks=1)
    _assert_same(model, before)
    gbp, grad = r.mean("gbp", "ssim")[0], r.mean("gradient", "ssim")[0]
    assert gbp > grad + 0.2, (gbp, grad)
    assert r.mean("gbp", "ssim_flip")[0] >= gbp - 1e-12  # the sign-flip variant is a max


def test_zplus_and_dtd_keep_their_structure_under_top_layer_randomization(digits_model):
    from toolkit_core.catalog import list_methods

    have = set(list_methods("attribution"))
    if not {"lrp", "dtd"} <= have:
        pytest.skip("the lrp and dtd plugins are not installed")
    model, x = digits_model
    methods = {"gradient": "gradient", "lrp_zplus": ("lrp", {"rule": "lrp_zplus"}), "dtd": "dtd"}
    r = cascading_randomization(model, x, None, methods, max_blocks=1)
    grad = r.mean("gradient", "ssim_flip")[0]
    # z+ maps are one pattern times the target logit: compare up to the sign the new head decides
    assert r.mean("lrp_zplus", "ssim_flip")[0] > grad + 0.2
    assert r.mean("dtd", "ssim_flip")[0] > grad + 0.2


# --------------------------------------------------------------------------- input alignment


def test_alignment_matches_the_formula_on_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).eval()
    x = torch.rand(5, 3, 2, 2)
    t = torch.tensor([0, 1, 2, 3, 0])
    r = input_alignment(lin, x, t, "gradient", baseline=0.25)
    w = lin[1].weight.detach()[t]  # the gradient of logit t is the row w_t
    want = F.cosine_similarity(w.double(), (x - 0.25).flatten(1).double(), dim=1)
    np.testing.assert_allclose(r.per_sample, want.numpy(), rtol=1e-9)
    # layer-wise: the input of the only layer is the flattened x (baseline 0)
    np.testing.assert_allclose(r.layerwise[0], F.cosine_similarity(w, x.flatten(1), dim=1).numpy(), rtol=1e-5)
    assert r.layers == ["1"] and r.quantity == "signal"


def test_alignment_quantity_is_relevance_for_input_x_gradient(digits_model):
    model, x = digits_model
    before = _snap_and_flags(model)
    r = input_alignment(model, x[:4], None, "input_x_gradient")
    _assert_same(model, before)
    assert r.quantity == "relevance" and r.layers == ["features.0", "features.3", "fc", "head"]
    assert np.isfinite(r.layerwise).all() and (np.abs(r.layerwise) <= 1 + 1e-9).all()


@needs_gbp
def test_gbp_aligns_with_the_input_on_a_random_vgg16():
    import torchvision

    from toolkit_core.data import load_photos

    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    x = load_photos(32)
    before = _snap_and_flags(vgg)
    gbp = input_alignment(vgg, x, None, "gbp", layerwise=False)
    grad = input_alignment(vgg, x, None, "gradient", layerwise=False)
    _assert_same(vgg, before)
    assert (gbp.per_sample > grad.per_sample).all()
    assert gbp.mean > grad.mean + 0.3, (gbp.mean, grad.mean)


# --------------------------------------------------------------------------- cosine similarity convergence


def test_convergence_of_the_gradient_matches_the_formula(digits_model):
    model, x = digits_model
    before = _snap_and_flags(model)
    n = 6
    r = cosine_similarity_convergence(model, "gradient", x[:1], n=n, seed=4)
    _assert_same(model, before)
    assert r.inject_at == "head" and r.layers == ["head", "fc", "features.3", "features.0", "attribution"]
    assert r.median[-1] == pytest.approx(r.median[-2])  # the gradient map is the signal at the input
    # at the input of the head the back-propagated vectors are W_head^T r_i (plain gradient)
    rs = torch.randn((n, 10), generator=torch.Generator().manual_seed(4))
    v = (rs @ model.head.weight.detach()).double()
    v = v / v.norm(dim=1, keepdim=True)
    c = (v @ v.T).abs()
    iu = torch.triu_indices(n, n, 1)
    assert r.median[0] == pytest.approx(float(c[iu[0], iu[1]].median()), rel=1e-6)
    assert all(0 <= m <= 1 for m in r.median)


@needs_gbp
def test_convergence_hook_injection_matches_the_engine(digits_model):
    # our autograd injection equals the attribution engine's own inject API
    from toolkit_core.analysis._common import Injector, analysis_state, run_method
    from toolkit_core.attribution import layerwise
    from toolkit_core.catalog import create

    model, x = digits_model
    rel = torch.randn(3, 24, generator=torch.Generator().manual_seed(0))
    xi = x[:1].expand(3, -1, -1, -1)
    ref = layerwise(model, xi, 0, method="gbp", record=None, inject={"fc": rel}, inject_kind="signal").attribution
    with analysis_state(model), Injector(model.fc, rel):
        ours = run_method(create("gbp"), model, xi, 0)
    torch.testing.assert_close(ours, ref)


# --------------------------------------------------------------------------- key-information sufficiency


def test_keep_top_k_keeps_exactly_the_top_elements():
    x = torch.arange(1.0, 21.0).reshape(2, 1, 2, 5)
    scores = torch.tensor([[9.0, 1, 2, 3, 4, 5, 6, 7, 8, 0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]).reshape(2, 1, 2, 5)
    out = keep_top_k(x, scores, 20, torch.full_like(x, -1.0))  # ceil(0.2 * 10) = 2 elements kept
    assert (out != -1).sum(dim=(1, 2, 3)).tolist() == [2, 2]
    assert out.flatten(1)[0, 0] == 1 and out.flatten(1)[0, 8] == 9 and out.flatten(1)[1, 9] == 20


def test_sufficiency_matches_a_direct_computation(digits_model):
    model, x = digits_model
    before = _snap_and_flags(model)
    r = key_information_sufficiency(model, x, None, "gradient", ks=(5, 100))
    _assert_same(model, before)
    assert r.unchanged[1] == 1.0  # keeping 100% of the input never changes the prediction
    with torch.no_grad():
        pred = model(x).argmax(1)
    from toolkit_core import attribute

    a = attribute(model, x, pred, method="gradient").abs()
    keep = math.ceil(0.05 * x[0].numel())
    idx = a.flatten(1).topk(keep, 1).indices
    xm = torch.zeros_like(x).flatten(1).scatter(1, idx, x.flatten(1).gather(1, idx)).reshape(x.shape)
    with torch.no_grad():
        want = float((model(xm).argmax(1) == pred).float().mean())
    assert r.unchanged[0] == pytest.approx(want)
    assert r.random is not None and len(r.random) == 2 and r.random[1] == 1.0


# --------------------------------------------------------------------------- bad arguments


def test_bad_arguments_give_clear_errors(digits_model):
    model, x = digits_model
    before = _snap_and_flags(model)
    with pytest.raises(UnknownMethodError, match="no method"):
        cascading_randomization(model, x, None, ["gradient", "no_such_method"])
    with pytest.raises(UnknownMethodError):
        input_alignment(model, x, None, "no_such_method")
    with pytest.raises(ValueError, match="empty batch"):
        cascading_randomization(model, x[:0], None, ["gradient"])
    with pytest.raises(ValueError, match="empty batch"):
        key_information_sufficiency(model, x[:0], None, "gradient")
    with pytest.raises(ValueError, match="could not process x of shape"):
        input_alignment(model, torch.rand(2, 3, 16, 16), None, "gradient")
    with pytest.raises(ValueError, match="target has 3 entries but the batch has 8"):
        cascading_randomization(model, x, [0, 1, 2], ["gradient"])
    with pytest.raises(ValueError, match="baseline of shape"):
        key_information_sufficiency(model, x, None, "gradient", baseline=torch.zeros(5))
    with pytest.raises(ValueError, match="order must be"):
        cascading_randomization(model, x, None, ["gradient"], order="bottom_up")
    with pytest.raises(ValueError, match="no sub-module named 'nope'"):
        cascading_randomization(model, x, None, ["gradient"], blocks=["nope"])
    with pytest.raises(ValueError, match="methods is empty"):
        cascading_randomization(model, x, None, [])
    with pytest.raises(ValueError, match="ks must be percentages"):
        key_information_sufficiency(model, x, None, "gradient", ks=(0, 10))
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        cosine_similarity_convergence(model, "gradient", x[:1], n=1)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        cosine_similarity_convergence(model, "gradient", x[:1], inject_at="nope", n=3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        input_alignment("not a model", x, None, "gradient")
    _assert_same(model, before)


# --------------------------------------------------------------------------- plots


def test_plots_write_pngs(tmp_path, digits_model):
    import matplotlib.image as mpimg

    from toolkit_core.analysis import plots

    model, x = digits_model
    r = cascading_randomization(model, x[:2], None, ["gradient", "input_x_gradient"], max_blocks=2, keep_maps=True)
    assert r.maps["gradient"].shape == (3, 2, 1, 16, 16)  # original + 2 steps
    plots.randomization_grid(r, x[:2], path=tmp_path / "grid.png")
    plots.similarity_curves(r, "ssim_flip", path=tmp_path / "ssim.png")
    s = key_information_sufficiency(model, x, None, "gradient", ks=(10, 50))
    plots.sufficiency_curves([s], path=tmp_path / "suff.png")
    a = input_alignment(model, x[:2], None, "gradient", layerwise=False)
    plots.alignment_bars([a], path=tmp_path / "align.png")
    for name in ("grid", "ssim", "suff", "align"):
        img = mpimg.imread(tmp_path / f"{name}.png")
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    # the grid has 2 rows of methods and 4 columns (input, original, 2 steps): wider than tall
    grid = mpimg.imread(tmp_path / "grid.png")
    assert grid.shape[1] > grid.shape[0]
    # per_row=2: the two methods side by side, one row of 2 x 4 panels, each method's input labelled
    fig = plots.randomization_grid(r, x[:2], per_row=2)
    axes = fig.axes
    assert len(axes) == 8 and [a.get_title() for a in axes[::4]] == ["gradient", "input_x_gradient"]
    assert len(plots.randomization_grid(r, x[:2], per_row=3).axes) == 8  # capped at the number of methods
    odd = plots.randomization_grid(r, x[:2], methods=["gradient", "input_x_gradient", "gradient"], per_row=2)
    assert len(odd.axes) == 16 and sum(a.axison for a in odd.axes) == 12  # the 4 unused panels are blank
    with pytest.raises(ValueError, match="per_row"):
        plots.randomization_grid(r, x[:2], per_row=0)
    h = plots.heatmap_array(torch.tensor([[-4.0, 2.0], [1.0, 0.0]]), percentile=100)
    np.testing.assert_allclose(h, [[-1.0, 0.5], [0.25, 0.0]])
    no_maps = cascading_randomization(model, x[:1], None, "gradient", max_blocks=1)
    with pytest.raises(ValueError, match="keep_maps=True"):
        plots.randomization_grid(no_maps, x[:1])


@needs_gbp
def test_convergence_injects_relevance_for_lrp_as_the_engine_does(digits_model):
    """For LRP the injected quantity is the relevance R = r (signal r / z), as the engine's inject API."""
    from toolkit_core.analysis._common import analysis_state, run_method
    from toolkit_core.analysis.convergence import RelevanceInjector
    from toolkit_core.attribution import layerwise
    from toolkit_core.catalog import create

    model, x = digits_model
    rel = torch.randn(3, 24, generator=torch.Generator().manual_seed(0))
    xi = x[:1].expand(3, -1, -1, -1)
    for rule in ("lrp_epsilon", "lrp_zplus"):
        ref = layerwise(model, xi, 0, method="lrp", rule=rule, record=None, inject={"fc": rel},
                        inject_kind="relevance").attribution
        with analysis_state(model), RelevanceInjector(model.fc, rel):
            ours = run_method(create("lrp", rule=rule), model, xi, 0)
        torch.testing.assert_close(ours, ref)
    r = cosine_similarity_convergence(model, "lrp", x[:1], n=4)
    assert r.quantity == "relevance"


def test_convergence_relevance_injection_is_conserved_on_a_bias_free_linear_model():
    """One bias-free linear layer, input x gradient (map x * c): injecting relevance r at the output gives
    input relevance x_j sum_k w_jk r_k / z_k, whose sum is sum_k r_k (conservation)."""
    from toolkit_core.analysis._common import analysis_state, run_method
    from toolkit_core.analysis.convergence import RelevanceInjector
    from toolkit_core.catalog import create

    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 4, bias=False)).eval()
    x = torch.rand(3, 12)
    r = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    with analysis_state(lin), RelevanceInjector(lin[1], r):
        amap = run_method(create("input_x_gradient"), lin, x, 0)
    z = lin(x).detach()
    want = x * ((r / z) @ lin[1].weight.detach())
    torch.testing.assert_close(amap.flatten(1), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(amap.flatten(1).sum(1), r.sum(1), rtol=1e-4, atol=1e-5)


def test_alignment_null_and_signal_references():
    """Linear model with weights w: gradient map c = w_t, input x gradient map x * w_t. With w_t = 1 the map
    x * 1 is x itself (alignment 1) and every permutation of |c| = 1 is c: the null is 1 too."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False)).eval()
    with torch.no_grad():
        lin[1].weight.fill_(1.0)
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(0))
    r = input_alignment(lin, x, 0, "input_x_gradient", layerwise=False)
    np.testing.assert_allclose(r.per_sample, 1.0, rtol=1e-9)
    np.testing.assert_allclose(r.null, 1.0, rtol=1e-9)
    want_signal = F.cosine_similarity(torch.ones(4, 12, dtype=torch.float64), x.double(), dim=1)
    np.testing.assert_allclose(r.signal, want_signal.numpy(), rtol=1e-9)
    # a signed w: the null is the mean over permutations of cos(x * permute(|w|), x), computed directly
    w = torch.randn(12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        lin[1].weight.copy_(w[None])
    r = input_alignment(lin, x, 0, "input_x_gradient", layerwise=False, n_null=5, seed=3)
    g = torch.Generator().manual_seed(3)
    c = w.abs().expand(4, 12)
    total = torch.zeros(4, dtype=torch.float64)
    for _ in range(5):
        perm = torch.argsort(torch.rand(c.shape, generator=g), dim=1)
        total += F.cosine_similarity((x * c.gather(1, perm)).double(), x.double(), dim=1)
    np.testing.assert_allclose(r.null, (total / 5).numpy(), rtol=1e-9)
    np.testing.assert_allclose(r.per_sample, F.cosine_similarity((x * w).double(), x.double(), dim=1).numpy(),
                               rtol=1e-6)
    assert r.quantity == "relevance" and {"signal_mean", "null_mean"} <= set(r.to_dict())
