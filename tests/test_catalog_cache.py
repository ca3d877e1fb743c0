"""The catalog cache behind `torchtrust list / info / plugins`: same output as the loaded catalog,
rebuilt when what it depends on changes, and read without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import registry
from registry import catalog_cache
from registry.cli import cli


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHTRUST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHTRUST_NO_CACHE", raising=False)
    old = registry.set_manager(None)  # no manager in the process: the CLI goes through the cache
    yield tmp_path / "cache"
    registry.set_manager(old)


def _list_json() -> list[dict]:
    res = CliRunner().invoke(cli, ["list", "--json"])
    assert res.exit_code == 0, res.output
    registry.set_manager(None)
    return json.loads(res.output)


def test_cached_list_info_plugins_equal_the_loaded_catalog(cache_env):
    first = _list_json()  # builds the cache
    assert catalog_cache.cache_path().exists()
    data = json.loads(catalog_cache.cache_path().read_text())
    assert data["key"] == catalog_cache.compute_key()
    second = _list_json()  # read back
    assert second == first
    mgr = registry.get_manager()
    assert [r["name"] for r in second] == mgr.list_methods()
    registry.set_manager(None)
    info = json.loads(CliRunner().invoke(cli, ["info", "pgd", "--json"]).output)
    assert info["parameters"] == [p.to_dict() for p in mgr.get_info("pgd").parameters]
    registry.set_manager(None)
    plugins = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    assert plugins == [r.to_dict() for r in mgr.plugins.values()]


def test_unknown_name_from_the_cache_suggests_the_close_one(cache_env):
    _list_json()
    res = CliRunner().invoke(cli, ["info", "pgdd"])
    assert res.exit_code == 1 and "did you mean 'pgd'" in res.stderr


def test_key_changes_with_the_block_list_and_the_cache_is_rebuilt(cache_env, monkeypatch):
    full = _list_json()
    key = catalog_cache.compute_key()
    name = next(r["plugin"] for r in full if r["name"] == "fgsm")
    monkeypatch.setenv("TORCHTRUST_DISABLE_PLUGINS", "fgsm")
    assert catalog_cache.compute_key() != key
    blocked = _list_json()
    assert "fgsm" not in [r["name"] for r in blocked] and len(blocked) < len(full), name


def test_key_changes_when_an_editable_plugin_source_changes(cache_env, tmp_path):
    import importlib.util

    key = catalog_cache.compute_key()
    spec = importlib.util.find_spec("torchtrust_fgsm")
    src = spec.submodule_search_locations[0]
    f = os.path.join(src, "__init__.py")
    st = os.stat(f)
    try:
        # newer than every source of the package (the key holds the newest mtime, and another file may
        # have been edited after __init__.py)
        os.utime(f, ns=(st.st_atime_ns, catalog_cache._newest_mtime(src) + 10**9))
        assert catalog_cache.compute_key() != key
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert catalog_cache.compute_key() == key


@pytest.mark.slow  # two fresh interpreters, one of them loading every plugin (~15 s); benchmarks/cli_startup.py too
def test_warm_list_does_not_import_torch(cache_env):
    env = {**os.environ, "TORCHTRUST_CACHE_DIR": str(cache_env)}
    probe = ("import sys\nfrom registry.cli import cli\ntry:\n    cli(['list', '--json'])\nexcept SystemExit:\n"
             "    pass\nprint('torch' in sys.modules, file=sys.stderr)")
    cold = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    warm = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert cold.stderr.strip().endswith("True")  # the first call loads the plugins and stores the catalog
    assert warm.stderr.strip().endswith("False"), warm.stderr
    assert json.loads(warm.stdout) == json.loads(cold.stdout)
