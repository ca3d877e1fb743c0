"""The engine sees every op: functional models equal their module twins; positions follow execution
order; zB bounds never come from the batch; input normalization is folded; gates, LayerNorm and
attention conserve relevance; non-finite relevance is an error naming the layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toolkit_core as tt
from toolkit_core.attribution import layerwise
from toolkit_core.attribution.engine import NonFiniteRelevanceError, UnsupportedModelError
from toolkit_core.testing import ModelSnapshot


def _x(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


class ModuleNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU6 -> pool -> linear -> GELU -> linear, written with modules."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
        self.f1, self.f2 = nn.Linear(8 * 4 * 4, 16), nn.Linear(16, 5)
        self.r1, self.r2, self.g = nn.ReLU(), nn.ReLU6(), nn.GELU()
        self.pool = nn.AdaptiveAvgPool2d(4)

    def forward(self, x):
        h = self.pool(self.r2(self.c2(self.r1(self.c1(x)))))
        return self.f2(self.g(self.f1(h.flatten(1))))


class FunctionalNet(ModuleNet):
    """The same function, with every activation, pooling and the dense layers called functionally
    (as GoogLeNet's ``F.relu``, DenseNet's last ReLU, an in-place ``relu_``)."""

    def forward(self, x):
        h = self.c1(x).relu_()
        h = F.relu6(self.c2(h))
        h = F.adaptive_avg_pool2d(h, 4)
        h = F.linear(torch.flatten(h, 1), self.f1.weight, self.f1.bias)
        return F.linear(F.gelu(h), self.f2.weight, self.f2.bias)


METHODS = [("gbp", {}), ("deconvnet", {}), ("rectgrad", {"q": 50.0}), ("lrp", {"composite": "epsilon_plus_flat"}),
           ("lrp", {"composite": "epsilon_gamma_box", "low": 0.0, "high": 1.0}),
           ("lrp", {"composite": "epsilon_alpha2_beta1"}), ("dtd", {"low": 0.0, "high": 1.0})]


@pytest.mark.parametrize("method,params", METHODS, ids=lambda v: str(v))
def test_functional_ops_equal_their_module_twins(method, params):
    mod, fun = ModuleNet().eval(), FunctionalNet().eval()
    x = _x(3, 3, 8, 8)
    if method == "rectgrad":  # RectGrad is defined at ReLUs; the gate (GELU) has no RectGrad rule
        with pytest.raises(UnsupportedModelError, match="GELU"):
            tt.attribute(mod, x, 2, method=method, **params)
        with pytest.raises(UnsupportedModelError, match="gelu"):
            tt.attribute(fun, x, 2, method=method, **params)
        return
    a = tt.attribute(mod, x, 2, method=method, **params)
    b = tt.attribute(fun, x, 2, method=method, **params)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max())), float((a - b).abs().max())
    assert a.abs().sum() > 0


class GoogLeNetStyle(nn.Module):
    """BasicConv2d of torchvision's GoogLeNet: conv + BN modules, then ``F.relu(x, inplace=True)``."""

    def __init__(self, functional: bool):
        super().__init__()
        torch.manual_seed(1)
        self.functional = functional
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, eps=0.001)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, eps=0.001)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, 4)
        for bn in (self.bn1, self.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        act = (lambda t: F.relu(t, inplace=True)) if self.functional else self.relu
        x = act(self.bn1(self.conv1(x)))
        x = act(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_gbp_on_functional_relu_is_not_the_plain_gradient():
    fun, mod = GoogLeNetStyle(True).eval(), GoogLeNetStyle(False).eval()
    x = _x(2, 3, 10, 10, seed=3)
    gbp_f = tt.attribute(fun, x, 1, method="gbp")
    gbp_m = tt.attribute(mod, x, 1, method="gbp")
    grad = tt.attribute(fun, x, 1, method="gradient")
    assert torch.allclose(gbp_f, gbp_m, atol=1e-6)
    assert float((gbp_f - grad).abs().max()) > 1e-3 * float(grad.abs().max())
    rect_f = tt.attribute(fun, x, 1, method="rectgrad", q=50.0)
    assert torch.allclose(rect_f, tt.attribute(mod, x, 1, method="rectgrad", q=50.0), atol=1e-6)
    assert not torch.allclose(rect_f, x * grad, atol=1e-4)


def test_unknown_functional_op_names_op_and_module_path():
    class Block(nn.Module):
        def forward(self, x):
            return torch.tanh(x) * 2 + torch.sin(x)

    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(Block()), nn.Linear(4, 2))
    snap = ModelSnapshot.take(net)
    with pytest.raises(UnsupportedModelError, match=r"op 'sin' in module '1.0' \(Block\)"):
        tt.attribute(net, torch.randn(2, 4), 0, method="lrp")
    snap.assert_unchanged(net)
    # the fix the message suggests: a rule for the module
    r = tt.attribute(net, torch.randn(2, 4), 0, method="lrp", composite={Block: "gradient", "linear": "lrp_epsilon"})
    assert r.shape == (2, 4)


def test_every_engine_method_accepts_a_composite_override():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    x = torch.randn(3, 4)
    for method in ("gbp", "deconvnet", "rectgrad", "dtd", "lrp"):
        params = {"low": -5.0, "high": 5.0} if method == "dtd" else {}
        if method not in ("lrp", "dtd"):  # ReLU rules are not defined at a Tanh
            with pytest.raises(UnsupportedModelError, match="Tanh"):
                tt.attribute(net, x, 0, method=method, **params)
        r = tt.attribute(net, x, 0, method=method, composite={nn.Tanh: "pass", "0": "gradient"}, **params)
        assert r.shape == x.shape and torch.isfinite(r).all()


class HeadFirst(nn.Module):
    """The head is *registered* first but runs last."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.head = nn.Linear(6, 3)
        self.body = nn.Linear(5, 6)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_positions_first_and_last_follow_execution_order():
    model = HeadFirst().eval()
    x = torch.randn(4, 5)
    flat_first = tt.attribute(model, x, 1, method="lrp", composite={"first": "lrp_flat", "linear": "lrp_epsilon"})
    by_name = tt.attribute(model, x, 1, method="lrp", composite={"body": "lrp_flat", "linear": "lrp_epsilon"})
    assert torch.allclose(flat_first, by_name, atol=1e-7)
    last = tt.attribute(model, x, 1, method="lrp", composite={"last": ("lrp_epsilon", {"epsilon": 5.0}),
                                                              "linear": "lrp_0"})
    named = tt.attribute(model, x, 1, method="lrp", composite={"head": ("lrp_epsilon", {"epsilon": 5.0}),
                                                               "linear": "lrp_0"})
    assert torch.allclose(last, named, atol=1e-7)
    assert not torch.allclose(last, tt.attribute(model, x, 1, method="lrp", rule="lrp_0"), atol=1e-4)


def test_zb_bounds_are_explicit_and_batch_independent():
    from toolkit_core.models import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN(size=16, width=4, hidden=16).eval()
    x = _x(4, 1, 16, 16)
    together = tt.attribute(model, x, 3, method="dtd")  # bounds from model.input_range = (0, 1)
    alone = torch.cat([tt.attribute(model, x[i:i + 1], 3, method="dtd") for i in range(4)])
    assert torch.allclose(together, alone, rtol=1e-5, atol=1e-7)
    assert torch.allclose(together, tt.attribute(model, x, 3, method="dtd", low=0.0, high=1.0))
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 14 * 14, 3)).eval()
    with pytest.raises(ValueError, match="needs the input bounds"):
        tt.attribute(plain, x, 0, method="dtd")


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def _vgg_like(first: nn.Conv2d):
    return nn.Sequential(first, nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 5))


@pytest.mark.parametrize("method,params", [
    ("lrp", {"composite": "epsilon_plus_flat"}), ("lrp", {"composite": "epsilon_gamma_box"}), ("dtd", {}),
    ("lrp", {"rule": "lrp_epsilon"}),
])
def test_input_normalization_is_folded_into_the_first_layer(method, params):
    torch.manual_seed(0)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    conv = nn.Conv2d(3, 8, 3, padding=0)  # no padding: folding by hand is then exact
    normalized = nn.Sequential(Normalize(mean, std), _vgg_like(conv)).eval()
    normalized.input_range = (0.0, 1.0)
    folded_conv = nn.Conv2d(3, 8, 3, padding=0)
    with torch.no_grad():
        s = torch.tensor(std).view(1, 3, 1, 1)
        m = torch.tensor(mean).view(1, 3, 1, 1)
        folded_conv.weight.copy_(conv.weight / s)
        folded_conv.bias.copy_(conv.bias - (conv.weight * m / s).sum((1, 2, 3)))
    by_hand = _vgg_like(folded_conv).eval()
    by_hand[2].load_state_dict(normalized[1][2].state_dict())
    by_hand[6].load_state_dict(normalized[1][6].state_dict())
    by_hand.input_range = (0.0, 1.0)
    x = _x(2, 3, 12, 12, seed=5)
    assert torch.allclose(normalized(x), by_hand(x), atol=1e-5)
    a = tt.attribute(normalized, x, 2, method=method, **params)
    b = tt.attribute(by_hand, x, 2, method=method, **params)
    corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    assert corr > 0.9999, float(corr)
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * float(b.abs().max()))


def test_functional_normalization_is_folded_too():
    torch.manual_seed(0)
    net = _vgg_like(nn.Conv2d(3, 8, 3, padding=1)).eval()

    class Wrapped(nn.Module):
        input_range = (0.0, 1.0)

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.sub(0.5).div(0.25))

    x = _x(2, 3, 8, 8, seed=6)
    module_norm = nn.Sequential(Normalize([0.5] * 3, [0.25] * 3), net).eval()
    module_norm.input_range = (0.0, 1.0)
    a = tt.attribute(Wrapped().eval(), x, 1, method="lrp", composite="epsilon_gamma_box")
    b = tt.attribute(module_norm, x, 1, method="lrp", composite="epsilon_gamma_box")
    assert torch.allclose(a, b, atol=1e-6)


def _conservation(model, x, target, **params):
    res = layerwise(model, x, target, method="lrp", record=None, **params)
    logit = res.logits.gather(1, res.target[:, None])[:, 0]
    return float(((res.attribution.flatten(1).sum(1) - logit).abs() / logit.abs()).max())


class SEBlock(nn.Module):
    """Squeeze-excitation as in torchvision (``scale * input``) plus a LayerNorm'ed attention head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1, bias=False), nn.Conv2d(4, 8, 1, bias=False)
        self.gate = nn.Sigmoid()
        self.norm = nn.LayerNorm(8, bias=False)
        self.attn = nn.MultiheadAttention(8, 2, bias=False, batch_first=True)
        self.act = nn.SiLU()
        self.head = nn.Linear(8, 3, bias=False)

    def forward(self, x):
        h = self.act(self.conv(x))
        h = h * self.gate(self.fc2(torch.relu(self.fc1(F.adaptive_avg_pool2d(h, 1)))))
        t = self.norm(h.flatten(2).transpose(1, 2))
        t = t + self.attn(t, t, t, need_weights=False)[0]
        return self.head(t.mean(1))


def test_gates_layernorm_and_attention_conserve_relevance():
    model = SEBlock().eval()
    x = _x(2, 3, 6, 6, seed=7)
    assert _conservation(model, x, 1, epsilon=1e-9, rule="lrp_epsilon") < 1e-4
    assert _conservation(model, x, 1, epsilon=1e-9, composite="epsilon_plus_flat") < 1e-3


def test_non_finite_relevance_is_an_error_naming_the_layer():
    from toolkit_core.attribution.rules import LinearRule

    class Blow(LinearRule):
        name = "blow"

        def forward(self, layer, a, z):
            return torch.full_like(z, float("inf"))

    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    snap = ModelSnapshot.take(net)
    with pytest.raises(NonFiniteRelevanceError, match="'blow' at '2'"):
        tt.attribute(net, torch.randn(2, 3), 0, method="lrp", composite={"2": Blow(), "linear": "lrp_epsilon"})
    snap.assert_unchanged(net)


def test_rule_registry_rejects_a_duplicate_name_naming_both_providers(monkeypatch):
    from toolkit_core.attribution import composites
    from toolkit_core.attribution.rules import Epsilon

    class Mine(Epsilon):
        name = "lrp_epsilon"

    class FakeMethod:
        rules = {"lrp_epsilon": Mine}
        composites = {}

    monkeypatch.setattr(composites, "_method_classes", lambda: [(FakeMethod, "torchtrust-mine")])
    with pytest.raises(composites.DuplicateRuleError, match="'lrp_epsilon' is registered by both toolkit_core "
                                                            "and torchtrust-mine"):
        composites.registered_rules()

    class Other:
        rules = {"my_rule": Mine}
        composites = {"c": {"conv": "my_rule"}}

    class Again:
        rules = {"my_rule": Epsilon}
        composites = {}

    monkeypatch.setattr(composites, "_method_classes", lambda: [(Other, "torchtrust-a"), (Again, "torchtrust-b")])
    with pytest.raises(composites.DuplicateRuleError, match="torchtrust-a and torchtrust-b"):
        composites.registered_rules()


def test_every_shipped_rule_lives_in_the_core_rule_module():
    # the plugins built on the engine declare composites (and kernels for the rules' slots), no rules
    from toolkit_core.attribution import composites, rules
    from toolkit_core.attribution.base import ModifiedBackprop
    from toolkit_core.catalog import get_info, list_methods

    registered = composites.registered_rules()
    assert registered == rules.BUILTIN_RULES
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    net.input_range = (0.0, 1.0)
    seen = set()
    for name in list_methods("attribution"):
        cls = get_info(name).cls
        if not issubclass(cls, ModifiedBackprop):
            continue
        assert cls.rules == {}, name
        resolver = tt.create(name).resolver(net)
        for mname, module in net.named_modules():
            if not mname:
                continue
            rule = resolver.rule_for(mname, module, frozenset({"first", "first_conv"}) if mname == "0" else frozenset())
            if rule is not None:
                assert type(rule).__module__ == "toolkit_core.attribution.rules", (name, mname, rule)
                seen.add(rule.name)
                for slot in rule.kernel_slots:  # a plugin's kernel, or the core's PyTorch function
                    fn = getattr(rule, slot)
                    given = cls.rule_kernels.get(slot)
                    assert fn is given if given is not None else fn is getattr(rules, fn.__name__), (name, slot)
    assert {"gbp_relu", "deconvnet_relu", "rectgrad_relu", "lrp_epsilon", "zplus", "zbox"} <= seen
