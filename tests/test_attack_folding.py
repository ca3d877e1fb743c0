"""Every attack runs on the BatchNorm-folded copy of the model (toolkit_core.folding), same function."""

import torch
from torch import nn

import toolkit_core as tt
from toolkit_core import folding
from toolkit_core.testing import ModelSnapshot


def _bn_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                      nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 10))
    with torch.no_grad():
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return m.eval()


def test_every_attack_gets_the_folded_model(monkeypatch):
    model = _bn_model()
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    seen = []
    real = folding.fold_batchnorm

    def spy(m):
        out = real(m)
        seen.append(out)
        return out

    monkeypatch.setattr(folding, "fold_batchnorm", spy)
    snap = ModelSnapshot.take(model)
    for name, kw in [("fgsm", {}), ("apgd", {"steps": 3, "seed": 0}), ("square", {"n_queries": 5, "seed": 0}),
                     ("fab", {"steps": 2, "n_target_classes": 1, "seed": 0})]:
        seen.clear()
        tt.create(name, eps=0.05, **kw)(model, x, y)
        assert seen and isinstance(seen[0], torch.fx.GraphModule), name  # folded: no BatchNorm left
        assert not any(isinstance(mod, nn.BatchNorm2d) for mod in seen[0].modules())
    snap.assert_unchanged(model)


def test_folded_fgsm_equals_unfolded_up_to_rounding():
    model = _bn_model()
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)
    fgsm = tt.create("fgsm", eps=0.05)
    folded = fgsm(model, x, y)
    plain = fgsm.perturb(model, x.clone(), y)  # straight on the unfolded model
    same = (folded == plain).float().mean()
    assert float(same) > 0.995  # a gradient component near 0 may change sign by rounding
    with torch.no_grad():
        assert torch.allclose(folding.fold_batchnorm(model)(x), model(x), atol=1e-5)
