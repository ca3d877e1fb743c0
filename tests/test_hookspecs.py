"""Every hook is documented where it is declared, in the authoring guide, and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from toolkit_core import hookspecs, kinds

from . import test_scaffold

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [name for name, obj in vars(hookspecs).items() if name.startswith("torchtrust_") and callable(obj)]


def test_one_hook_per_kind():
    assert sorted(HOOKS) == sorted(hookspecs.KIND_HOOKS.values())
    assert hookspecs.KINDS == ("attribution", "attack", "defense", "prior", "metric", "dataset", "detector",
                              "certifier", "patch")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_contract_and_example(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 200, f"{hook} needs a docstring stating its contract"
    assert "Example::" in doc and "@hookimpl" in doc and "register(" in doc
    assert list(inspect.signature(getattr(hookspecs, hook)).parameters) == ["register"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_in_the_authoring_guide_and_tested(hook):
    assert hook in (ROOT / "docs" / "plugin-authoring.md").read_text(), f"document {hook} in docs/plugin-authoring.md"
    row = next(k for k in kinds.KINDS if k.hook == hook)
    templates = ROOT / "registry" / "templates" / row.template
    assert (templates / "method.py.tmpl").exists() and (templates / "test.py.tmpl").exists(), (
        f"{hook} has no plugin template, so tests/test_scaffold.py does not exercise it")
    assert row.name in test_scaffold.KINDS
