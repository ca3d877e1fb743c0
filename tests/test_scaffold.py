"""`torchtrust new-plugin` writes packages that are discovered and whose own tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from toolkit_core.kinds import KIND_NAMES

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

KINDS = KIND_NAMES  # every kind of the table gets a generated plugin


def _fake_install(root: Path, site: Path, name: str) -> None:
    """What `pip install` would add: a dist-info with the package's entry points."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    eps = meta["entry-points"]["torchtrust.plugins"]
    (info / "entry_points.txt").write_text("[torchtrust.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))


def test_generated_plugins_are_discovered_and_their_tests_pass(tmp_path):
    site, paths, tests = tmp_path / "site", [], []
    for kind in KINDS:
        name = f"demo_{kind}"
        root = tmp_path / name
        res = CliRunner().invoke(cli, ["new-plugin", name, "--kind", kind, "--dir", str(root)])
        assert res.exit_code == 0, res.output
        assert (root / "pyproject.toml").exists() and (root / "tests" / f"test_{name}.py").exists()
        _fake_install(root, site, name)
        paths.append(str(root / "src"))
        tests.append(str(root / "tests"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *paths, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
                           "--rootdir", str(tmp_path), *tests], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{3 * len(KINDS)} passed" in proc.stdout


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["new-plugin", "demo", "--kind", "metric", "--dir", str(tmp_path / "x")])
    assert res.exit_code == 1 and "not empty" in res.stderr
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["Demo", "1demo", "my-plugin", ""])
def test_rejects_bad_names(name, tmp_path):
    res = CliRunner().invoke(cli, ["new-plugin", name, "--kind", "metric", "--dir", str(tmp_path / "p")])
    assert res.exit_code == 1 and "lowercase identifier" in res.stderr
