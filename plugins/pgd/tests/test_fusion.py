"""BatchNorm folding used by PGD: same function and input gradient, model untouched, safe fallbacks."""

import torch
import torch.nn.functional as F
from torch import nn
from torchtrust_pgd.fusion import FoldedConv, fold_batchnorm
from torchtrust_pgd.methods import PGD

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
    folded = fold_batchnorm(net)
    assert sum(isinstance(m, FoldedConv) for m in folded.modules()) == 1  # the hooked pair is kept
    handle.remove()


def test_pgd_with_and_without_folding_agree():
    net = _bn_net()
    x = torch.rand(16, 1, 12, 12)
    with torch.no_grad():
        y = net(x).argmax(1)
    snap = ModelSnapshot.take(net)
    a = PGD(eps=0.1, alpha=0.02, steps=5, seed=0)(net, x, y)
    b = PGD(eps=0.1, alpha=0.02, steps=5, seed=0, fold_bn=False)(net, x, y)
    snap.assert_unchanged(net)
    assert float((a - b).abs().max()) <= 0.2 + 1e-6  # both inside the same ball
    assert float((a == b).float().mean()) > 0.95  # identical up to rare sign flips of tiny gradients
