"""Discovery, isolation of broken plugins, allow/block lists, duplicates, did-you-mean."""

from __future__ import annotations

import sys
from contextlib import ExitStack

import pytest

import registry
import toolkit_core
from registry import PluginManager, find_candidates, plugin_module
from toolkit_core.errors import DuplicateMethodError, ParameterError, UnknownMethodError
from toolkit_core.methods import Metric
from toolkit_core.testing import with_plugin_on_path

from . import plugin_fixtures as fx

FAKES = {
    "good": ("torchtrust-fake-good", fx.GOOD),
    "brokenimport": ("torchtrust-fake-broken", fx.BROKEN_IMPORT),
    "hookraises": ("torchtrust-fake-raises", fx.HOOK_RAISES),
    "duplicate": ("torchtrust-fake-dup", fx.DUPLICATE),
    "badclass": ("torchtrust-fake-badclass", fx.BAD_CLASS),
    "wrongkind": ("torchtrust-fake-wrongkind", fx.WRONG_KIND),
}


def _fakes(stack: ExitStack, *names: str) -> None:
    for n in names:
        dist, src = FAKES[n]
        stack.enter_context(
            with_plugin_on_path({n: f"tt_fake_{n}"}, distribution=dist, version="1.2.3", files={f"tt_fake_{n}.py": src})
        )


def _fake_candidates():
    return [c for c in find_candidates() if c.name in FAKES]


def test_discovery_through_a_dist_info_on_sys_path():
    with ExitStack() as stack:
        _fakes(stack, "good")
        mgr = PluginManager(_fake_candidates()).load()
        assert mgr.list_methods() == ["fake_zero"]
        info = mgr.get_info("fake_zero")
        assert (info.provider, info.version, info.plugin) == ("torchtrust-fake-good", "1.2.3", "good")
        assert info.kind == "metric"
        params = [(p.name, p.type, p.default) for p in info.parameters]
        assert params == [("offset", "float", 0.0), ("mode", "str", "a")]
        assert mgr.create("fake_zero", offset=2).compute(None, None) == {"zero": 2.0}


def test_nothing_is_imported_before_load():
    with ExitStack() as stack:
        _fakes(stack, "good")
        mgr = PluginManager(_fake_candidates())
        assert "tt_fake_good" not in sys.modules
        mgr.load()
        assert "tt_fake_good" in sys.modules


def test_broken_plugins_are_isolated_and_reported():
    with ExitStack() as stack:
        _fakes(stack, "good", "brokenimport", "hookraises", "badclass", "wrongkind")
        mgr = PluginManager(_fake_candidates()).load()
        assert mgr.list_methods() == ["fake_zero"]  # fake_partial was rolled back with its plugin
        status = {n: r.status for n, r in mgr.plugins.items()}
        assert status == {"good": "loaded", "brokenimport": "failed", "hookraises": "failed",
                          "badclass": "failed", "wrongkind": "failed"}
        assert "not installed" in mgr.plugins["brokenimport"].error
        assert "boom" in mgr.plugins["hookraises"].error
        assert "not a subclass" in mgr.plugins["badclass"].error
        assert "Metric" in mgr.plugins["wrongkind"].error
        assert sorted(r.name for r in mgr.failed) == ["badclass", "brokenimport", "hookraises", "wrongkind"]


def test_duplicate_names_give_one_error_naming_both_providers():
    with ExitStack() as stack:
        _fakes(stack, "good", "duplicate")
        mgr = PluginManager(_fake_candidates()).load()
        with pytest.raises(DuplicateMethodError) as err:
            mgr.get_info("fake_zero")
        msg = str(err.value)
        assert "torchtrust-fake-good 1.2.3" in msg and "torchtrust-fake-dup 1.2.3" in msg
        failed = [r.name for r in mgr.failed]
        assert len(failed) == 1  # the plugin loaded second (entry points load in name order)
        assert failed == ["good"] and f"TORCHTRUST_DISABLE_PLUGINS={failed[0]}" in msg
        # the rest of both plugins keeps working
        assert mgr.get_info("fake_unique").provider == "torchtrust-fake-dup"
        assert "fake_zero" not in mgr.list_methods()


@pytest.mark.parametrize(
    ("allow", "block", "loaded", "disabled"),
    [
        ("good", None, {"good"}, {"brokenimport"}),
        (None, "brokenimport", {"good"}, {"brokenimport"}),
        ("good,brokenimport", "brokenimport", {"good"}, {"brokenimport"}),
        ("good", "good", set(), {"good", "brokenimport"}),
        (" good , ", "", {"good"}, {"brokenimport"}),
    ],
)
def test_allow_and_block_lists_apply_before_import(allow, block, loaded, disabled, monkeypatch):
    if allow is not None:
        monkeypatch.setenv("TORCHTRUST_PLUGINS", allow)
    else:
        monkeypatch.delenv("TORCHTRUST_PLUGINS", raising=False)
    monkeypatch.setenv("TORCHTRUST_DISABLE_PLUGINS", block or "")
    with ExitStack() as stack:
        _fakes(stack, "good", "brokenimport")
        mgr = PluginManager(_fake_candidates()).load()
        got = {n for n, r in mgr.plugins.items() if r.status == "loaded"}
        off = {n for n, r in mgr.plugins.items() if r.status == "disabled"}
        assert (got, off) == (loaded, disabled)
        assert not mgr.failed  # the broken plugin was never imported when disabled
        assert ("tt_fake_brokenimport" in sys.modules) is False


def test_unknown_names_suggest_close_matches():
    with ExitStack() as stack:
        _fakes(stack, "good")
        mgr = PluginManager(_fake_candidates()).load()
        with pytest.raises(UnknownMethodError, match="did you mean 'fake_zero'"):
            mgr.get_info("fake_zer")
        with pytest.raises(UnknownMethodError, match="of kind 'attack'"):
            mgr.get_info("fake_zero", kind="attack")
        with pytest.raises(ValueError, match="unknown kind"):
            mgr.list_methods("attacks")


def test_parameters_are_validated_with_the_valid_ones_listed():
    with ExitStack() as stack:
        _fakes(stack, "good")
        mgr = PluginManager(_fake_candidates()).load()
        with pytest.raises(ParameterError, match=r"unknown parameter 'ofset' \(did you mean 'offset'\?\).*"
                                                 r"offset: float = 0.0, mode: str = 'a'"):
            mgr.create("fake_zero", ofset=1)
        with pytest.raises(ParameterError, match="'offset' must be float, got 'x'"):
            mgr.create("fake_zero", offset="x")
        with pytest.raises(ParameterError, match="'mode' must be str"):
            mgr.create("fake_zero", mode=True)


def test_in_process_registration_and_glob():
    class Local(Metric):
        name = "local_metric"
        summary = "Registered from a notebook."
        citation = "arXiv:0000.00000"

        def compute(self, model, data):
            return {"v": 1.0}

    mgr = PluginManager([])
    rec = mgr.register_module(plugin_module(torchtrust_register_metrics=lambda register: register(Local)), name="nb")
    assert rec.status == "loaded" and rec.methods == ["local_metric"]
    assert mgr.list_methods("metric", "local_*") == ["local_metric"]
    assert mgr.list_methods("attack") == []


def test_installed_gradient_plugin_through_the_conveniences(fresh_registry):
    assert {"gradient", "input_x_gradient"} <= set(toolkit_core.list_methods("attribution"))
    info = toolkit_core.get_info("input_x_gradient")
    assert info.provider == "torchtrust-gradient" and info.kernels == ()
    assert registry.get_manager().plugins["gradient"].status == "loaded"
