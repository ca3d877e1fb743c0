"""The one BatchNorm folding (toolkit_core.folding): same function and input gradient as the unfolded
model, model untouched, a cache that follows module swaps, attribute changes and in-place weight
updates, and no folding when a hook would be skipped."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toolkit_core as tt
from toolkit_core.folding import FoldedConv, fold_batchnorm
from toolkit_core.testing import ModelSnapshot


def _bn_net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10),
    )
    net.train()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for _ in range(3):
            net(torch.rand(16, 1, 12, 12) * 2)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.3, 0.3)
    return net.eval()


def test_folded_forward_and_gradient_match():
    net = _bn_net()
    snap = ModelSnapshot.take(net)
    folded = fold_batchnorm(net)
    assert folded is not net
    assert sum(isinstance(m, FoldedConv) for m in folded.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(5, 1, 12, 12)
    y = torch.tensor([0, 1, 2, 3, 4])
    assert torch.allclose(folded(x), net(x), atol=1e-5, rtol=1e-5)
    grads = []
    for m in (net, folded):
        xi = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(F.cross_entropy(m(xi), y), xi)[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    snap.assert_unchanged(net)
    assert fold_batchnorm(net) is folded  # cached while the weights are unchanged
    with torch.no_grad():
        net[0].weight.mul_(1.5)
    refolded = fold_batchnorm(net)
    assert refolded is not folded and torch.allclose(refolded(x), net(x), atol=1e-5, rtol=1e-5)


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 10)

    def forward(self, x):
        h = self.bn(self.conv(x))
        if h.mean() > 0:  # data-dependent control flow: not traceable
            h = h * 2
        return self.head(h.mean((2, 3)))


def test_fallbacks_return_the_model_itself():
    assert fold_batchnorm(_Branchy().eval()).__class__ is _Branchy
    net = _bn_net()
    net.train()
    assert fold_batchnorm(net) is net  # train mode: BN uses batch statistics, nothing to fold
    net.eval()
    handle = net[1].register_forward_hook(lambda *a: None)
    assert fold_batchnorm(net) is net  # any hook: refuse to fold
    handle.remove()
    assert fold_batchnorm(net) is not net


def _out(m, x):
    with torch.no_grad():
        return m(x)


def test_cache_follows_module_swaps_and_attribute_changes():
    net = _bn_net()
    x = torch.rand(3, 1, 12, 12)
    first = fold_batchnorm(net)
    assert fold_batchnorm(net) is first  # cached
    # a swapped module (same shapes, other weights)
    torch.manual_seed(5)
    net[3] = nn.Conv2d(6, 8, 3, padding=1, bias=False).eval()
    swapped = fold_batchnorm(net)
    assert swapped is not first
    assert torch.allclose(_out(swapped, x), _out(net, x), atol=1e-5)
    assert not torch.allclose(_out(first, x), _out(net, x), atol=1e-3)  # the stale copy would be wrong
    # a changed attribute: the BatchNorm's eps, the conv's padding
    net[4].eps = 0.5
    eps_changed = fold_batchnorm(net)
    assert eps_changed is not swapped and torch.allclose(_out(eps_changed, x), _out(net, x), atol=1e-5)
    net[0].padding = (2, 2)
    net[3].padding = (0, 0)
    pad_changed = fold_batchnorm(net)
    assert torch.allclose(_out(pad_changed, x), _out(net, x), atol=1e-5)
    # a replaced forward on an instance
    net[2].forward = lambda t: t.clamp(min=0.1)
    fwd_changed = fold_batchnorm(net)
    assert torch.allclose(_out(fwd_changed, x), _out(net, x), atol=1e-5)


def test_input_normalization_as_a_root_pre_hook_is_not_folded_away():
    net = _bn_net()
    handle = net.register_forward_pre_hook(lambda m, args: ((args[0] - 0.5) / 0.25,))
    x = torch.rand(4, 1, 12, 12)
    y = _out(net, x).argmax(1)
    assert fold_batchnorm(net) is net
    a = tt.create("pgd", eps=0.1, alpha=0.02, steps=3, seed=0)(net, x, y)
    b = tt.create("pgd", eps=0.1, alpha=0.02, steps=3, seed=0, fold_bn=False)(net, x, y)
    assert torch.equal(a, b)
    handle.remove()


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_attribution_folding_matches_the_unfolded_model(composite):
    # the engine folds with the same batchnorm_affine: LRP on the model equals LRP on fold_batchnorm(model)
    net = _bn_net()
    net.input_range = (0.0, 1.0)
    folded = fold_batchnorm(net)
    folded.input_range = (0.0, 1.0)
    x = torch.rand(3, 1, 12, 12)
    a = tt.attribute(net, x, 2, method="lrp", composite=composite)
    b = tt.attribute(folded, x, 2, method="lrp", composite=composite)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


def test_pgd_with_and_without_folding_agree():
    net = _bn_net()
    x = torch.rand(16, 1, 12, 12)
    with torch.no_grad():
        y = net(x).argmax(1)
    snap = ModelSnapshot.take(net)
    a = tt.create("pgd", eps=0.1, alpha=0.02, steps=5, seed=0)(net, x, y)
    b = tt.create("pgd", eps=0.1, alpha=0.02, steps=5, seed=0, fold_bn=False)(net, x, y)
    snap.assert_unchanged(net)
    assert float((a - b).abs().max()) <= 0.2 + 1e-6  # both inside the same ball
    assert float((a == b).float().mean()) > 0.95  # identical up to rare sign flips of tiny gradients
