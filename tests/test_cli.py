"""The command line: output, JSON shapes, exit codes, one-line errors, cheap --help."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack

import pytest
from click.testing import CliRunner

from registry.cli import cli
from toolkit_core.testing import with_plugin_on_path

from . import plugin_fixtures as fx


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_help_does_not_import_torch():
    code = "import sys; from registry.cli import main; sys.argv=['torchtrust','--help']\n" \
           "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0\n" \
           "assert 'torch' not in sys.modules, 'torch imported by --help'\nprint('CLEAN')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "CLEAN" in out.stdout and "new-plugin" in out.stdout


def test_list_json_has_exactly_the_documented_keys(fresh_registry):
    res = run("list", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert all(set(r) == {"name", "kind", "plugin", "version", "summary"} for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["gradient"]["plugin"] == by_name["input_x_gradient"]["plugin"] == "torchtrust-gradient"
    assert by_name["gradient"]["kind"] == "attribution"
    attribution = json.loads(run("list", "--kind", "attribution", "--json").output)
    assert {r["kind"] for r in attribution} == {"attribution"}
    assert [r["name"] for r in json.loads(run("list", "input_*", "--json").output)] == ["input_x_gradient"]


def test_list_table_and_info(fresh_registry):
    res = run("list")
    assert res.exit_code == 0 and "gradient" in res.output
    info = run("info", "input_x_gradient", "--json")
    data = json.loads(info.output)
    assert data["provider"] == "torchtrust-gradient" and data["citation"] == "arXiv:1605.01713"
    data = json.loads(run("info", "gbp", "--json").output)
    assert data["kernels"][0]["name"] == "torchtrust_gbp::guided_relu_grad"
    assert data["kernels"][0]["backend_cpu"] == "reference"
    text = run("info", "gradient").output
    assert "absolute" in text and "False" in text and "arXiv:1312.6034" in text


def test_errors_are_one_line_without_traceback(fresh_registry):
    res = run("info", "gradiant")
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1 and "did you mean 'gradient'" in res.stderr
    assert "Traceback" not in res.output
    debug = run("--debug", "info", "gradiant")
    assert debug.exit_code == 1 and debug.exception is not None  # --debug lets the exception through


def test_failed_plugin_is_shown_and_list_still_works(fresh_registry):
    with ExitStack() as stack:
        stack.enter_context(with_plugin_on_path({"brokenimport": "tt_fake_broken_cli"}, "torchtrust-fake-broken",
                                                files={"tt_fake_broken_cli.py": fx.BROKEN_IMPORT}))
        listed = run("list", "--json")
        assert listed.exit_code == 0 and "gradient" in listed.stdout
        plugins = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
        assert plugins["brokenimport"]["status"] == "failed"
        assert "not installed" in plugins["brokenimport"]["error"]
        assert plugins["gradient"]["status"] == "loaded" and plugins["gradient"]["version"] == "0.1.0"
        doctor = run("doctor")
        assert doctor.exit_code == 1 and "FAILED" in doctor.output and "brokenimport" in doctor.output


def test_doctor_passes_when_every_plugin_loads(fresh_registry, monkeypatch):
    monkeypatch.setenv("TORCHTRUST_PLUGINS", "gbp")
    res = run("doctor")
    assert res.exit_code == 0, res.output
    assert "torch" in res.output and "torchtrust_gbp::guided_relu_grad: reference on cpu" in res.output


def test_disabled_plugin_is_reported(fresh_registry, monkeypatch):
    monkeypatch.setenv("TORCHTRUST_DISABLE_PLUGINS", "gradient")
    plugins = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
    assert plugins["gradient"]["status"] == "disabled" and plugins["gradient"]["methods"] == []
    assert "gradient" not in [r["name"] for r in json.loads(run("list", "--json").stdout)]


@pytest.mark.parametrize("bad", [["list", "--kind", "nope"], ["new-plugin", "Bad-Name", "--kind", "metric"]])
def test_bad_arguments_exit_non_zero(bad, tmp_path):
    res = run(*bad, *(["--dir", str(tmp_path / "p")] if bad[0] == "new-plugin" else []))
    assert res.exit_code != 0
