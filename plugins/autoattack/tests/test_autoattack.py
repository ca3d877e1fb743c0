"""AutoAttack: exact pass counts, only robust points attacked, worst case <= members, seeded, third-party
attacks by name, versions match the reference schedule, errors, model state."""

import types

import pytest
import torch
from torchtrust_autoattack import VERSIONS, PassCounter

import registry
import toolkit_core as tt
from toolkit_core import hookimpl
from toolkit_core.methods import Attack
from toolkit_core.testing import ModelSnapshot, check_method


def test_contract():
    check_method("autoattack")


def test_versions_follow_the_reference_schedule():
    std = {label: (name, p) for label, name, p in VERSIONS["standard"]}
    assert list(std) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert std["apgd-t"][1]["n_target_classes"] == 9 and std["apgd-t"][1]["restarts"] == 1
    assert std["fab-t"][1]["n_target_classes"] == 9 and std["square"][1]["n_queries"] == 5000
    assert [label for label, _, _ in VERSIONS["plus"]] == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    members = tt.create("autoattack", eps=0.5, norm="l2", version="plus", seed=3).members()
    assert members["apgd-ce"].restarts == 5 and members["fab"].targeted is False
    assert all(m.eps == 0.5 and m.norm == "l2" and m.seed == 3 for m in members.values())


def test_pass_counts_are_exact_and_only_robust_points_are_attacked(digits):
    model, x, y = digits
    aa = tt.create("autoattack", eps=0.1, attacks=[("fgsm", {}), ("apgd", {"steps": 4})])
    r = aa.run(model, x, y)
    n_clean = int(r.clean.sum())
    after_fgsm = n_clean - int(r.broken["fgsm"].sum())
    assert r.forward["fgsm"] == n_clean and r.backward["fgsm"] == n_clean  # one forward + one backward each
    assert r.forward["apgd"] == 5 * after_fgsm and r.backward["apgd"] == 5 * after_fgsm  # steps + 1 each
    assert r.overhead_forward == len(x) + n_clean + after_fgsm
    assert not bool((r.broken["fgsm"] & r.broken["apgd"]).any())
    assert not bool((r.broken["apgd"] & ~r.clean).any())
    with torch.no_grad():
        pred = model(r.x_adv).argmax(1)
    assert torch.equal(pred == y, r.robust)  # x_adv realizes the reported worst case
    acc = r.robust_after()
    assert acc["fgsm"] >= acc["apgd"] == r.worst_case_accuracy


def test_worst_case_not_above_any_member_and_seeded(digits):
    model, x, y = digits
    attacks = [("apgd", {"steps": 6}), ("apgd_t", {"steps": 6, "n_target_classes": 2}),
               ("fab", {"steps": 6, "n_target_classes": 2}), ("square", {"n_queries": 60})]
    aa = tt.create("autoattack", eps=0.08, attacks=attacks, seed=1)
    r = aa.run(model, x, y)
    for name, params in attacks:
        x_adv = tt.create(name, eps=0.08, seed=1, **params)(model, x, y)
        with torch.no_grad():
            single = float((model(x_adv).argmax(1) == y).float().mean())
        assert r.worst_case_accuracy <= single
    again = tt.create("autoattack", eps=0.08, attacks=attacks, seed=1)(model, x, y)
    assert torch.equal(again, r.x_adv)


class ShiftAttack(Attack):
    """A third party's attack: move every pixel by +eps (clipped)."""

    name = "third_party_shift"
    summary = "Shift every pixel by eps."
    citation = "https://example.org"

    def __init__(self, eps: float = 0.1):
        self.eps = eps

    def perturb(self, model, x, y):
        return (x + self.eps).clamp(0, 1)


def test_a_third_party_attack_joins_by_name(digits):
    model, x, y = digits
    plugin = types.SimpleNamespace(torchtrust_register_attacks=hookimpl(lambda register: register(ShiftAttack)))
    old = registry.set_manager(None)
    try:
        registry.get_manager().register_module(plugin, name="third_party")
        aa = tt.create("autoattack", eps=0.4, attacks=["third_party_shift", ("fgsm", {})])
        r = aa.run(model, x, y)
        assert aa.members()["third_party_shift"].eps == 0.4  # got the ensemble's eps
        with torch.no_grad():
            shifted = model((x + 0.4).clamp(0, 1)).argmax(1) != y
        assert torch.equal(r.broken["third_party_shift"], shifted & r.clean)
        assert r.backward["third_party_shift"] == 0
    finally:
        registry.set_manager(old)


def test_pass_counter_and_errors(digits):
    model, x, y = digits
    snap = ModelSnapshot.take(model)
    c = PassCounter(model)
    xg = x[:5].clone().requires_grad_(True)
    c(xg).sum().backward()
    with torch.no_grad():
        c(x[:7])
    assert (c.forward_samples, c.backward_samples) == (12, 5)
    with pytest.raises(TypeError):
        torch.fx.symbolic_trace(c)
    with pytest.raises(ValueError, match="version"):
        from torchtrust_autoattack import AutoAttack

        AutoAttack(version="fast")
    with pytest.raises(ValueError, match="not an attack"):
        tt.create("autoattack", attacks=["trades"]).members()
    model.train()
    snap = ModelSnapshot.take(model)
    tt.create("autoattack", eps=0.05, attacks=[("apgd", {"steps": 2})])(model, x, y)
    snap.assert_unchanged(model)
