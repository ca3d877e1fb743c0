"""toolkit_core.params (the shared constructor-argument checks: bounds, messages) and the shared attack budget."""

from __future__ import annotations

import math

import pytest

from toolkit_core import params


@pytest.mark.parametrize("value, strict, ok", [
    (0, False, True), (0.0, True, False), (1e-9, True, True), (-1e-9, False, False),
    (math.inf, False, False), (math.nan, False, False), (True, False, False), ("0.1", False, False),
])
def test_number_bounds(value, strict, ok):
    if ok:
        assert params.number("m", "eps", value, strict=strict) == float(value)
        assert type(params.number("m", "eps", value, strict=strict)) is float
    else:
        with pytest.raises(ValueError, match=r"^m: eps must be a finite number "
                                             + (">" if strict else ">=") + r" 0 \(the radius\), got "):
            params.number("m", "eps", value, strict=strict, meaning="the radius")


def test_count_and_seed_refuse_bools_and_non_integers():
    assert params.count("m", "steps", 3) == 3
    for bad in (0, -2, 1.0, True, None):
        with pytest.raises(ValueError, match=r"^m: steps must be an integer >= 1, got " + repr(bad)):
            params.count("m", "steps", bad)
    assert params.seed("m", None) is None and params.seed("m", 0) == 0
    for bad in (False, 1.5, "0"):
        with pytest.raises(ValueError, match="m: seed must be an integer or None"):
            params.seed("m", bad)


def test_choice_lists_the_valid_values():
    assert params.choice("m", "norm", "l2", ("linf", "l2")) == "l2"
    with pytest.raises(ValueError, match=r"^m: norm must be 'linf' or 'l2', got 'l1'$"):
        params.choice("m", "norm", "l1", ("linf", "l2"))
    with pytest.raises(ValueError, match=r"must be one of \['a', 'b', 'c'\], got 'd'"):
        params.choice("m", "v", "d", ("a", "b", "c"))


@pytest.mark.parametrize("name, bad", [
    ("pgd", {"eps": -0.1}), ("pgd", {"alpha": 0.0}), ("pgd", {"norm": "l1"}), ("fgsm", {"eps": math.nan}),
    ("apgd", {"loss": "mse"}), ("apgd_t", {"n_target_classes": 0}), ("fab", {"restarts": 0}),
    ("square", {"n_queries": 0}), ("autoattack", {"version": "fast"}), ("randomized_smoothing", {"sigma": 0.0}),
])
def test_the_attacks_and_certifiers_use_them(name, bad):
    from toolkit_core.catalog import get_info

    key, value = next(iter(bad.items()))
    with pytest.raises(ValueError, match=rf"^{name}: {key} must be .*got {value!r}"):
        get_info(name).cls(**bad)



def test_targeted_budget_follows_the_scale():
    from toolkit_core.attacks import TargetedBudget
    from toolkit_core.catalog import get_info
    from toolkit_core.methods import Scale

    assert TargetedBudget.experiment_variants(Scale(eps=0.1)) == [
        {"eps": 0.1, "steps": 50, "n_target_classes": 9, "seed": 0}]
    assert TargetedBudget.experiment_variants(Scale(eps=8 / 255, quick=True)) == [
        {"eps": 8 / 255, "steps": 10, "n_target_classes": 3, "seed": 0}]
    for name in ("apgd_t", "fab"):
        cls = get_info(name).cls
        assert cls.experiment_variants(Scale(eps=0.2, quick=True)) == [
            {"eps": 0.2, "steps": 10, "n_target_classes": 3, "seed": 0}]
        assert cls.contract_params() == {"steps": 3, "n_target_classes": 2, "seed": 0}
    assert get_info("apgd").cls.contract_params() != TargetedBudget.contract_params()  # the mixin stays on APGD-T
