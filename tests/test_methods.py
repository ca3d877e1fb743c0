"""MethodInfo introspection and parameter validation."""

from __future__ import annotations

from typing import Literal

import pytest

from toolkit_core.errors import ParameterError, PluginRegistrationError
from toolkit_core.methods import Attack, Metric, describe, validate_params


class Knobs(Attack):
    name = "knobs"
    summary = "Many parameter types.\nSecond line is dropped."
    citation = "arXiv:1706.06083"

    def __init__(self, eps: float = 0.1, steps: int = 10, norm: Literal["linf", "l2"] = "linf",
                 seed: int | None = None, ks: tuple[int, ...] = (1, 2), attack: Attack | None = None):
        pass


def test_introspection():
    info = describe(Knobs)
    assert info.summary == "Many parameter types."
    assert [(p.name, p.type, p.default, p.required) for p in info.parameters] == [
        ("eps", "float", 0.1, False),
        ("steps", "int", 10, False),
        ("norm", "Literal['linf', 'l2']", "linf", False),
        ("seed", "int | None", None, False),
        ("ks", "tuple[int, ...]", (1, 2), False),
        ("attack", "Attack | None", None, False),
    ]


@pytest.mark.parametrize("good", [{"eps": 1}, {"steps": 3}, {"norm": "l2"}, {"seed": None}, {"seed": 4},
                                  {"ks": [1, 5]}, {"attack": Knobs()}])
def test_valid_parameters(good):
    validate_params(describe(Knobs), good)


@pytest.mark.parametrize(("bad", "match"), [
    ({"eps": "0.1"}, "'eps' must be float"),
    ({"steps": 2.5}, "'steps' must be int"),
    ({"steps": True}, "'steps' must be int"),
    ({"norm": "l1"}, "'norm' must be Literal"),
    ({"ks": [1, "a"]}, "'ks' must be tuple"),
    ({"attack": "pgd"}, "'attack' must be Attack | None"),
    ({"step": 3}, "did you mean 'steps'"),
])
def test_invalid_parameters_list_the_valid_ones(bad, match):
    with pytest.raises(ParameterError, match=match) as err:
        validate_params(describe(Knobs), bad)
    assert "valid parameters: eps: float = 0.1, steps: int = 10" in str(err.value)


def test_required_parameter():
    class Needs(Metric):
        name = "needs"
        summary = "s"
        citation = "c"

        def __init__(self, layer: str):
            self.layer = layer

    with pytest.raises(ParameterError, match="needs the parameter 'layer'"):
        validate_params(describe(Needs), {})


@pytest.mark.parametrize(("attrs", "match"), [
    ({"name": "Bad Name"}, "lowercase identifier"),
    ({"name": "ok", "summary": ""}, "summary must be a non-empty string"),
    ({"name": "ok", "summary": "s", "citation": None}, "citation must be a non-empty string"),
])
def test_malformed_classes(attrs, match):
    cls = type("M", (Metric,), {"summary": "s", "citation": "c", **attrs})
    with pytest.raises(PluginRegistrationError, match=match):
        describe(cls)
    with pytest.raises(PluginRegistrationError, match="subclass"):
        describe(int)
