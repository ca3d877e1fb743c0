"""evaluate_robustness flags the classic signs of gradient masking, each with a model rigged to show it,
and stays silent on an honest model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toolkit_core as tt
from toolkit_core.data import load_digits
from toolkit_core.models import digits_model


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(16, "test").tensors
    return digits_model(), x[:60], y[:60]


def _nearest(x: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.cdist(x.flatten(1), bank, p=float("inf"))
    return d.min(1)


class MaskedOffData(nn.Module):
    """Same predictions as ``inner``, but the input gradient is zero except exactly at the stored points."""

    def __init__(self, inner, bank):
        super().__init__()
        self.inner = inner
        self.register_buffer("bank", bank.flatten(1))

    def forward(self, x):
        z = self.inner(x)
        dist, _ = _nearest(x.detach(), self.bank)
        return torch.where((dist < 1e-6)[:, None], z, z.detach())


class FarFallback(nn.Module):
    """``inner`` within L-inf distance ``r`` of a stored point, else a constant vote for its label."""

    def __init__(self, inner, bank, labels, r):
        super().__init__()
        self.inner, self.r = inner, r
        self.register_buffer("bank", bank.flatten(1))
        self.register_buffer("labels", labels)

    def forward(self, x):
        dist, nn_idx = _nearest(x.detach(), self.bank)
        vote = 10.0 * F.one_hot(self.labels[nn_idx], 10).to(x.dtype)
        return torch.where((dist < self.r)[:, None], self.inner(x), vote)


def _run(model, x, y, attacks, **kw):
    with pytest.warns(RuntimeWarning, match="gradient masking"):
        return tt.evaluate_robustness(model, (x, y), attacks=attacks, **kw)


def test_black_box_beating_white_box_is_flagged(data):
    model, x, y = data
    rigged = MaskedOffData(model, x).eval()
    pgd = tt.create("pgd", eps=0.1, alpha=0.025, steps=10, seed=0)
    square = tt.create("square", eps=0.1, n_queries=100, seed=0)
    res = _run(rigged, x, y, [pgd, square], checks=False)
    assert res.accuracy["square"] < res.accuracy["pgd"]
    assert any("black-box attack square" in w for w in res.warnings)


def test_fgsm_stronger_than_pgd_is_flagged(data):
    model, x, y = data
    rigged = MaskedOffData(model, x).eval()  # FGSM's gradient at x is real; PGD's random start loses it
    attacks = [tt.create("fgsm", eps=0.1), tt.create("pgd", eps=0.1, alpha=0.025, steps=10, seed=0)]
    res = _run(rigged, x, y, attacks, checks=False)
    assert res.accuracy["fgsm"] < res.accuracy["pgd"]
    assert any("single-step attack fgsm" in w for w in res.warnings)


def test_accuracy_rising_with_eps_and_unbounded_attack_not_reaching_zero_are_flagged(data):
    model, x, y = data
    rigged = FarFallback(model, x, y, r=0.15).eval()
    pgd = tt.create("pgd", eps=0.1, alpha=0.025, steps=10, seed=0)
    res = _run(rigged, x, y, [pgd], check_points=40)
    eps, acc = res.sweep["eps"], res.sweep["accuracy"]
    assert eps[:3] == pytest.approx([0.05, 0.1, 0.2]) and eps[3] == 1.0
    assert acc[2] > acc[1] and acc[3] > 0  # far from the data the rigged model votes for the nearest label
    assert any("does not fall as eps grows" in w for w in res.warnings)
    assert any("unbounded radius" in w for w in res.warnings)


def test_random_forward_and_train_mode_are_in_the_result(data):
    model, x, y = data

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, v):
            return self.inner(v) + torch.randn(v.shape[0], 10)

    with pytest.warns(RuntimeWarning, match="random"):
        res = tt.evaluate_robustness(Noisy().eval(), (x[:10], y[:10]), attacks=["fgsm"])
    assert any("forward pass is random" in w for w in res.warnings)
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        res = tt.evaluate_robustness(model, (x[:10], y[:10]), attacks=["fgsm"], checks=False)
    assert model.training
    model.eval()
    assert any("train mode" in w for w in res.warnings) and "warning: the model is in train mode" in str(res)


def test_an_honest_model_raises_no_flag(data):
    model, x, y = data
    attacks = [tt.create("fgsm", eps=0.1), tt.create("pgd", eps=0.1, alpha=0.025, steps=10, seed=0),
               tt.create("square", eps=0.1, n_queries=50, seed=0)]
    res = tt.evaluate_robustness(model, (x, y), attacks=attacks)
    assert res.warnings == []
    acc = res.sweep["accuracy"]
    assert acc[0] >= acc[1] >= acc[2] and acc[3] == 0.0
    assert res.to_dict()["warnings"] == []


def test_composite_attacks_report_their_members(data):
    model, x, y = data
    aa = tt.create("autoattack", eps=0.1, attacks=[("fgsm", {}), ("apgd", {"steps": 3})])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=25)
    res = tt.evaluate_robustness(model, loader, attacks={"aa": aa}, checks=False)
    comp = res.component_accuracy("aa")
    assert list(comp) == ["fgsm", "apgd"] and comp["apgd"] == pytest.approx(res.accuracy["aa"])
    broken = res.components["aa"]
    assert torch.equal(res.robust["aa"], res.clean & ~broken["fgsm"] & ~broken["apgd"])
    assert res.passes["aa"]["backward"] > 0 and res.to_dict()["attacks"]["aa"]["components"]["apgd"] == comp["apgd"]


def test_a_black_box_member_of_an_ensemble_beating_its_gradient_members_is_flagged(data):
    model, x, y = data
    rigged = MaskedOffData(model, x).eval()
    members = [("apgd", {"steps": 10}), ("square", {"n_queries": 100})]
    aa = tt.create("autoattack", eps=0.1, attacks=members, seed=0)
    res = _run(rigged, x, y, {"aa": aa}, checks=False)
    comp = res.component_accuracy("aa")
    assert comp["square"] < comp["apgd"] - 0.002  # the condition, evaluated directly
    assert any("black-box member square" in w and "inside aa" in w for w in res.warnings)
    assert res.to_dict()["attacks"]["aa"]["params"]["members"] == {
        "apgd": {"name": "apgd", "black_box": False}, "square": {"name": "square", "black_box": True}}
    # the same ensemble on the honest model: APGD leaves Square nothing to break, no flag
    honest = tt.evaluate_robustness(model, (x, y), attacks={"aa": aa}, checks=False)
    comp = honest.component_accuracy("aa")
    assert comp["square"] >= comp["apgd"] - 0.002 and honest.warnings == []
