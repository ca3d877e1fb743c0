"""Optional: our maps equal Zennit's (the reference LRP implementation) on real architectures.
Zennit is never a dependency: the test is skipped where it is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

zennit = pytest.importorskip("zennit")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zennit_comparison as zc  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "vgg11"])
def test_maps_equal_zennit(model):
    import torch

    import toolkit_core as tt

    torch.manual_seed(0)
    import torchvision

    net = getattr(torchvision.models, model)(weights=None).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = net(x).argmax(1)
    for method, (name, params) in zc.OURS.items():
        ours = tt.attribute(net, x, target, method=name, **params)
        ref = zc.zennit_map(net, x, target, method, model)
        raw, scaled, corr = zc.compare(ours, ref)
        assert scaled < 2e-3 and corr > 0.9999, (method, raw, scaled, corr)
