"""Every method in the catalog can be created by name and meets the contract of its kind.

Parametrized over ``list_methods()``, so every plugin installed later is covered automatically.
"""

from __future__ import annotations

import pytest

import toolkit_core
from toolkit_core.methods import BASES
from toolkit_core.testing import check_method

ALL = toolkit_core.list_methods()


def test_the_catalog_is_not_empty():
    assert {"gradient", "input_x_gradient"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_contract(name):
    method = check_method(name)
    info = toolkit_core.get_info(name)
    assert isinstance(method, BASES[info.kind])
    assert info.provider.startswith("torchtrust-"), f"{name} must come from its own plugin distribution"
    assert repr(method).startswith(type(method).__name__)


@pytest.mark.parametrize("name", ALL)
def test_info_round_trips_to_json(name):
    import json

    data = json.loads(json.dumps(toolkit_core.get_info(name).to_dict()))
    assert data["name"] == name and data["kind"] in BASES
    assert all({"name", "type", "default", "required"} == set(p) for p in data["parameters"])


@pytest.mark.parametrize("name", toolkit_core.list_methods("metric"))
def test_every_metric_key_has_a_one_line_definition(name):
    cls = toolkit_core.get_info(name).cls
    if not toolkit_core.get_info(name).provider.startswith("torchtrust-"):
        pytest.skip("third-party metric: definitions are optional")
    for key in cls.higher_is_better:
        text = cls.definitions.get(key, "")
        assert text and "\n" not in text and len(text) <= 120, f"{name}: define {key!r} in one line"
