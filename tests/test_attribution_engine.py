"""Numbers for the modified-backprop engine: LRP-0 = input x gradient, conservation, rules vs dense
matrices, GBP vs its formula, bad inputs, unchanged models, real architectures."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import toolkit_core as tt
from toolkit_core.attribution import get_composite, get_rule, layerwise
from toolkit_core.attribution.engine import UnsupportedLayerError
from toolkit_core.attribution.layers import make_layer
from toolkit_core.attribution.rules import stabilize
from toolkit_core.models import DigitsCNN
from toolkit_core.testing import ModelSnapshot


def _bias_free_cnn(seed=0):
    torch.manual_seed(seed)
    return DigitsCNN(size=16, width=4, hidden=16, bias=False).eval()


def _x(n=3, seed=1):
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_lrp0_equals_input_times_gradient_on_bias_free_relu_net():
    model, x = _bias_free_cnn(), _x()
    r = tt.attribute(model, x, 3, method="lrp", rule="lrp_0")
    ixg = tt.attribute(model, x, 3, method="input_x_gradient")
    assert torch.allclose(r, ixg, rtol=1e-5, atol=1e-7)
    assert r.abs().sum() > 0


def test_layerwise_conservation_for_small_epsilon_on_bias_free_net():
    model, x = _bias_free_cnn(), _x()
    res = layerwise(model, x, 5, method="lrp", rule="lrp_epsilon", epsilon=1e-9, record=True)
    logit = res.logits[:, 5]
    assert set(res.relevance) == {"features.0", "features.3", "fc", "head"}
    for name, rel in res.relevance.items():
        total = rel.flatten(1).sum(1)
        assert ((total - logit).abs() / logit.abs()).max() < 1e-4, name
    assert ((res.attribution.flatten(1).sum(1) - logit).abs() / logit.abs()).max() < 1e-4


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_composites_conserve_on_bias_free_net(composite):
    model, x = _bias_free_cnn(), _x()
    res = layerwise(model, x, 2, method="lrp", composite=composite, epsilon=1e-9, record=True)
    logit = res.logits[:, 2]
    assert ((res.attribution.flatten(1).sum(1) - logit).abs() / logit.abs()).max() < 1e-3


def test_resnet50_epsilon_plus_flat_sums_to_target_logit():
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    res = layerwise(model, x, None, method="lrp", composite="epsilon_plus_flat", record=None)
    logit = res.logits[0, res.target[0]]
    rel = float((res.attribution.sum() - logit).abs() / logit.abs())
    assert rel < 0.05, rel


# --------------------------------------------------------------------------- rules vs dense matrices


def _dense(layer_module, in_shape):
    """The matrix M (in x out) of a bias-free linear map: z = a_flat @ M."""
    n = int(torch.tensor(in_shape).prod())
    eye = torch.eye(n, dtype=layer_module.weight.dtype).reshape(n, *in_shape)
    w = layer_module.weight
    with torch.no_grad():
        if isinstance(layer_module, nn.Conv2d):
            out = nn.functional.conv2d(eye, w, None, layer_module.stride, layer_module.padding)
        else:
            out = eye @ w.T
    return out.reshape(n, -1)


def _dense_reference(rule_name, module, a, g, params):
    """R_in from the rule's formula written with the dense matrix of the layer."""
    in_shape = a.shape[1:]
    b = module.bias.detach()
    w = module.weight.detach()
    M = _dense(module, in_shape)
    bias = (b[:, None, None].expand(-1, *((nn.functional.conv2d(a, w, None, module.stride, module.padding)).shape[2:]))
            if isinstance(module, nn.Conv2d) else b).reshape(-1)
    af = a.reshape(a.shape[0], -1)
    z = af @ M + bias
    R = z * g.reshape(z.shape)
    eps = params.get("epsilon", 1e-6)

    def prop(contrib, den_sum):  # contrib: (B, in, out)
        return (contrib / stabilize(den_sum, eps)[:, None, :] * R[:, None, :]).sum(-1)

    A = af[:, :, None]
    Ap, An = A.clamp(min=0), A.clamp(max=0)
    Mp, Mn = M.clamp(min=0), M.clamp(max=0)
    bp, bn = bias.clamp(min=0), bias.clamp(max=0)
    if rule_name == "lrp_epsilon":
        return prop(A * M, z)
    if rule_name == "lrp_gamma":  # Zennit's sign-aware gamma, bias in the denominator
        gam = params["gamma"]
        up = Ap * (M + gam * Mp) + An * (M + gam * Mn)
        down = Ap * (M + gam * Mn) + An * (M + gam * Mp)
        pos = (z > 0).to(z.dtype)[:, None, :]
        return prop(up * pos, up.sum(1) + bias + gam * bp) + prop(down * (1 - pos), down.sum(1) + bias + gam * bn)
    if rule_name in ("lrp_zplus", "zplus"):
        c = Ap * Mp + An * Mn
        return prop(c, c.sum(1) + bp)
    if rule_name == "lrp_alpha_beta":
        cp, cn = Ap * Mp + An * Mn, Ap * Mn + An * Mp
        return (params["alpha"] * prop(cp, cp.sum(1) + bp) - params["beta"] * prop(cn, cn.sum(1) + bn))
    if rule_name == "lrp_flat":
        ones = (M != 0).to(M.dtype)  # the connections of the layer (random weights are never exactly 0)
        return prop(ones.expand(a.shape[0], -1, -1), ones.sum(0).expand(a.shape[0], -1))
    if rule_name == "lrp_wsquare":
        w2 = M * M
        return prop(w2.expand(a.shape[0], -1, -1), w2.sum(0).expand(a.shape[0], -1))
    if rule_name in ("lrp_zbox", "zbox"):
        lo, hi = params["low"], params["high"]
        c = A * M - lo * M.clamp(min=0) - hi * M.clamp(max=0)
        return prop(c, c.sum(1))
    raise KeyError(rule_name)


RULE_CASES = [
    ("lrp_epsilon", {"epsilon": 1e-6}), ("lrp_gamma", {"gamma": 0.25, "epsilon": 1e-6}),
    ("lrp_zplus", {"epsilon": 1e-6}), ("lrp_alpha_beta", {"alpha": 2.0, "beta": 1.0, "epsilon": 1e-6}),
    ("lrp_flat", {"epsilon": 1e-6}), ("lrp_wsquare", {"epsilon": 1e-6}),
    ("lrp_zbox", {"low": -1.0, "high": 1.5, "epsilon": 1e-6}),
]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("rule_name,params", RULE_CASES)
def test_rule_matches_dense_matrix_formula(kind, rule_name, params, signed):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    if kind == "conv":
        module = nn.Conv2d(2, 3, 3, padding=1, stride=2).double()
        a = torch.rand(2, 2, 5, 5, generator=gen, dtype=torch.float64)
    else:
        module = nn.Linear(7, 4).double()
        a = torch.rand(2, 7, generator=gen, dtype=torch.float64)
    if signed:
        a = a - 0.3  # signed inputs exercise the sign-aware forms of z+, gamma and alpha-beta
    with torch.no_grad():
        z = module(a)
    g = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    rule = get_rule(rule_name, **{k: v for k, v in params.items() if k != "epsilon" or rule_name != "lrp_0"})
    layer = make_layer(module, "layer", a.shape)
    state = rule.forward(layer, a, z)
    out = rule.backward(layer, state, g)
    R_in = out if rule.produces_relevance else a * out
    ref = _dense_reference(rule_name, module, a, g, params).reshape(a.shape)
    assert torch.allclose(R_in, ref, rtol=1e-8, atol=1e-10), (R_in - ref).abs().max()


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_gamma_equals_dense_formula_when_a_relu_follows(kind):
    # a ReLU after the layer sends no signal to outputs z <= 0: gamma then takes its one-map path
    # (W + gamma W+)^T; the result must still be the sign-aware dense formula
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    if kind == "conv":
        module = nn.Conv2d(2, 3, 3, padding=1).double()
        a = torch.rand(2, 2, 5, 5, generator=gen, dtype=torch.float64)
    else:
        module = nn.Linear(7, 4).double()
        a = torch.rand(2, 7, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        z = module(a)
    g = torch.randn(z.shape, generator=gen, dtype=torch.float64) * (z > 0)
    assert bool((z <= 0).any()) and bool((z > 0).any())
    params = {"gamma": 0.25, "epsilon": 1e-6}
    rule = get_rule("lrp_gamma", **params)
    layer = make_layer(module, "layer", a.shape)
    out = rule.backward(layer, rule.forward(layer, a, z), g)
    ref = _dense_reference("lrp_gamma", module, a, g, params).reshape(a.shape)
    assert torch.allclose(a * out, ref, rtol=1e-8, atol=1e-10), (a * out - ref).abs().max()


# --------------------------------------------------------------------------- GBP and friends


def _hand_net():
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(inplace=True), nn.Linear(4, 3)).eval()


def test_gbp_and_deconvnet_equal_their_formulas_on_hand_built_net():
    net = _hand_net()
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(5))
    W1, W2, W3 = (net[i].weight.detach() for i in (0, 2, 4))
    z1 = x @ W1.T + net[0].bias.detach()
    z2 = z1.clamp(min=0) @ W2.T + net[2].bias.detach()
    t = 1
    g3 = W3[t].expand(2, -1)  # d logit_t / d a2
    gbp = ((z2 > 0) * g3.clamp(min=0)) @ W2
    gbp = ((z1 > 0) * gbp.clamp(min=0)) @ W1
    dec = (g3.clamp(min=0) @ W2).clamp(min=0) @ W1
    assert torch.allclose(tt.attribute(net, x, t, method="gbp"), gbp, atol=1e-6)
    assert torch.allclose(tt.attribute(net, x, t, method="deconvnet"), dec, atol=1e-6)


def test_rectgrad_equals_its_formula_on_hand_built_net():
    net = _hand_net()
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(5))
    q = 50.0
    W1, W2, W3 = (net[i].weight.detach() for i in (0, 2, 4))
    a1 = (x @ W1.T + net[0].bias.detach()).clamp(min=0)
    a2 = (a1 @ W2.T + net[2].bias.detach()).clamp(min=0)

    def rect(a, g):
        s = a * g
        tau = torch.quantile(s, q / 100, dim=1, keepdim=True)
        return (s > tau) * g

    g = rect(a2, W3[2].expand(2, -1)) @ W2
    g = rect(a1, g) @ W1
    assert torch.allclose(tt.attribute(net, x, 2, method="rectgrad", q=q), x * g, atol=1e-6)


def test_layerwise_injection_propagates_given_relevance():
    model, x = _bias_free_cnn(), _x(2)
    inj = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    res = layerwise(model, x, None, method="lrp", rule="lrp_epsilon", epsilon=1e-9,
                    inject={"fc": inj}, record=["features.3"])
    with torch.no_grad():
        z = model.fc(model.flatten(model.features(x)))
    kept = torch.where(z != 0, inj, torch.zeros_like(inj)).sum(1)
    assert torch.allclose(res.relevance["features.3"].flatten(1).sum(1), kept, rtol=1e-4)
    assert torch.allclose(res.attribution.flatten(1).sum(1), kept, rtol=1e-4)


# --------------------------------------------------------------------------- bad inputs, model state


@pytest.mark.parametrize("method", ["gbp", "lrp"])
def test_bad_inputs_raise_clear_errors(method):
    model = _bias_free_cnn()
    x = _x(2)
    with pytest.raises(ValueError, match="batch dimension"):
        tt.attribute(model, x[0, 0, 0], 0, method=method)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        tt.attribute(model, x, 10, method=method)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tt.attribute(model, bad, 0, method=method)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="inf"):
        tt.attribute(model, bad, 0, method=method)
    with pytest.raises(TypeError, match="floating"):
        tt.attribute(model, (x * 255).long(), 0, method=method)

    class Tuple(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m(x), x

    with pytest.raises(TypeError, match="returned tuple"):
        tt.attribute(Tuple(), x, 0, method=method)


def test_unsupported_layer_names_layer_type_and_fix():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedLayerError, match=r"'1' \(Tanh\).*composite=\{'1': rule\}"):
        tt.attribute(net, torch.randn(2, 4), 0, method="gbp")
    # a layer that never runs does not count (ShuffleNet-v2's empty Sequential)
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.unused = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), nn.Tanh()

        def forward(self, x):
            return self.body(x)

    assert tt.attribute(Unused(), torch.randn(2, 4), 0, method="gbp").shape == (2, 4)

    class Odd(nn.Module):
        def forward(self, x):
            return torch.exp(x)

    net = nn.Sequential(nn.Linear(4, 4), Odd(), nn.Linear(4, 2))
    snap = ModelSnapshot.take(net)
    with pytest.raises(UnsupportedLayerError, match=r"op 'exp' in module '1' \(Odd\).*composite=\{ThatModule: rule\}"):
        tt.attribute(net, torch.randn(2, 4), 0, method="lrp")
    snap.assert_unchanged(net)
    r = tt.attribute(net, torch.randn(2, 4), 0, method="lrp", composite={"1": "gradient", "linear": "lrp_epsilon"})
    assert r.shape == (2, 4)


def test_model_unchanged_after_success_and_after_exception():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.train()
    model.layer1[0].conv1.weight.requires_grad_(False)
    snap = ModelSnapshot.take(model)
    x = torch.rand(1, 3, 32, 32)
    tt.attribute(model, x, 1, method="lrp", composite="epsilon_gamma_box", low=0.0, high=1.0)
    snap.assert_unchanged(model)
    assert model.relu.inplace is True and model.maxpool.return_indices is False

    def boom(module, args, out):
        raise RuntimeError("boom")

    h = model.layer2.register_forward_hook(boom)
    snap = ModelSnapshot.take(model)
    with pytest.raises(RuntimeError, match="boom"):
        tt.attribute(model, x, 1, method="lrp", composite="epsilon_plus_flat")
    snap.assert_unchanged(model)
    assert model.relu.inplace is True and model.maxpool.return_indices is False and torch.is_grad_enabled()
    h.remove()


class _RenamedPool(nn.MaxPool2d):
    """A user's subclass: the rule must not depend on the class name."""


@pytest.mark.parametrize("pool", [
    nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(3, 1, dilation=2),
    nn.AdaptiveMaxPool2d((3, 2)), _RenamedPool(2),
])
def test_max_pooling_rule_equals_the_gradient(pool):
    # the engine keeps only int32 argmax indices for max pools; overlapping windows must still add up
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), pool, nn.Flatten(), nn.LazyLinear(5)).eval()
    x = torch.randn(2, 3, 11, 13, dtype=torch.float64)
    model.double()(x)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xr)[:, 1].sum(), xr)
    assert torch.equal(tt.attribute(model, x, 1, method="gradient"), grad)
    lrp0 = tt.attribute(model, x, 1, method="lrp", rule="lrp_0")
    assert torch.allclose(lrp0, x * grad, atol=1e-12)  # LRP-0 through the pool = input x gradient
    one_d = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(20, 5)).double()
    x1 = torch.randn(2, 3, 12, dtype=torch.float64)
    xr = x1.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(one_d(xr)[:, 0].sum(), xr)
    assert torch.allclose(tt.attribute(one_d, x1, 0, method="lrp", rule="lrp_0"), x1 * grad, atol=1e-12)


def test_in_place_layers_stay_in_place_without_touching_the_input():
    # mask rules let an in-place ReLU keep running in place; a ReLU applied to the input itself
    # must still leave the caller's tensor alone
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(3 * 6 * 6, 4)).eval()
    x = torch.randn(2, 1, 8, 8)
    before = x.clone()
    for method in ("gbp", "rectgrad", "deconvnet", "lrp"):
        out = tt.attribute(model, x, 1, method=method)
        assert torch.equal(x, before) and torch.isfinite(out).all()
    assert model[0].inplace and model[2].inplace
    # GBP with the ReLUs in place equals GBP with them out of place
    ref = tt.attribute(nn.Sequential(nn.ReLU(), *list(model)[1:]), x, 1, method="gbp")
    assert torch.equal(tt.attribute(model, x, 1, method="gbp"), ref)


def _zero_biases(model):
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
    return model


@pytest.mark.parametrize("arch", ["vgg16", "resnet18", "mobilenet_v2"])
def test_real_architectures(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    snap = ModelSnapshot.take(model)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for method, params in [("gbp", {}), ("rectgrad", {}), ("lrp", {"composite": "epsilon_plus_flat"})]:
        res = layerwise(model, x, 7, method=method, record=None, **params)
        assert res.attribution.shape == x.shape and torch.isfinite(res.attribution).all()
        assert res.attribution.abs().sum() > 0
    snap.assert_unchanged(model)
    # without biases (BatchNorm shifts included) LRP-epsilon conserves relevance through BatchNorm
    # folding, residual additions, ReLU6, pooling and concatenation
    _zero_biases(model)
    res = layerwise(model, x, 7, method="lrp", epsilon=0.0, record=None)
    logit = res.logits[0, 7]
    assert float((res.attribution.sum() - logit).abs() / logit.abs()) < 1e-3


def test_composite_lookup_by_name():
    comp = get_composite("epsilon_plus_flat")
    assert comp == {"first": "lrp_flat", "conv": "lrp_zplus", "linear": "lrp_epsilon"}
    assert get_rule("lrp_gamma", gamma=0.5).gamma == 0.5


def test_render_heatmap_png(tmp_path):
    from toolkit_core.attribution.render import heatmap_array

    a = torch.randn(1, 3, 8, 8)
    data = tt.render_heatmap(a, tmp_path / "h.png", image=torch.rand(3, 8, 8))
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "h.png").read_bytes() == data
    rgb = heatmap_array(torch.tensor([[1.0, -1.0], [0.0, 0.5]]))
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 2] < 60  # positive: red
    assert rgb[0, 1, 2] > 200 and rgb[0, 1, 0] < 60  # negative: blue


@pytest.mark.parametrize("composite", [None, "epsilon_gamma_box"])
def test_low_memory_mode_gives_the_same_map(composite):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    a = tt.attribute(model, x, 4, method="lrp", composite=composite, low=0.0, high=1.0)
    b = tt.attribute(model, x, 4, method="lrp", composite=composite, low_memory=True, low=0.0, high=1.0)
    # equal up to float32 rounding (the folded layer is recomputed as one convolution)
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(a.abs().max()))


# --------------------------------------------------------------------------- BatchNorm folding under the guard


@pytest.mark.parametrize("rule", ["lrp_zplus", "lrp_gamma"])
def test_public_api_folds_batchnorm_inside_the_guard(rule):
    """attribute() runs the method inside guarded(), whose own hooks (input copy, output check) sit on
    the model; folding must still happen (the engine folds at run time and never asks fold_batchnorm,
    which refuses hooked models). Reference: the same model with the BatchNorm folded by hand."""
    from toolkit_core.folding import batchnorm_affine, has_hooks

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(-1.5, 1.5)  # negative scales: W+ of the folded conv differs from s W+
        bn.bias.uniform_(-0.5, 0.5)
    head = nn.Linear(4 * 6 * 6, 3)
    net = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), head).eval()
    s, t = batchnorm_affine(bn)
    folded_conv = nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        folded_conv.weight.copy_(conv.weight * s[:, None, None, None])
        folded_conv.bias.copy_(conv.bias * s + t)
    by_hand = nn.Sequential(folded_conv, nn.ReLU(), nn.Flatten(), head).eval()
    unfolded = nn.Sequential(conv, nn.Identity(), bn, nn.ReLU(), nn.Flatten(), head).eval()  # BN its own layer
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(1))

    method = tt.create("lrp", rule=rule)
    hooked = []
    inner = method.attribute

    def spy(model, xs, target):
        hooked.append(has_hooks(model))
        return inner(model, xs, target)

    method.attribute = spy
    snap = ModelSnapshot.take(net)
    ours = method(net, x, 1)
    snap.assert_unchanged(net)
    assert hooked == [True] and not has_hooks(net)  # it ran under the guard's hooks, which are gone again
    ref = tt.attribute(by_hand, x, 1, method="lrp", rule=rule)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    other = tt.attribute(unfolded, x, 1, method="lrp", rule=rule)
    assert float((other - ref).abs().max()) > 1e-2 * float(ref.abs().max())  # folding changes the map
