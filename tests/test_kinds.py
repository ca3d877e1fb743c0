"""Every list of kinds is derived from the one table, :data:`toolkit_core.kinds.KINDS`."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from registry import cli, manager, scaffold
from toolkit_core import hookspecs, kinds, methods, testing
from toolkit_core.experiment import config

ROOT = Path(__file__).resolve().parents[1]
NAMES = tuple(k.name for k in kinds.KINDS)


def test_hook_specs_are_the_table_hooks():
    assert hookspecs.KINDS == NAMES == kinds.KIND_NAMES
    assert hookspecs.KIND_HOOKS == {k.name: k.hook for k in kinds.KINDS}
    declared = {n for n, obj in vars(hookspecs).items() if n.startswith("torchtrust_") and callable(obj)}
    assert declared == {k.hook for k in kinds.KINDS}


def test_base_classes_are_the_table_bases():
    assert tuple(methods.BASES) == NAMES
    for k in kinds.KINDS:
        base = methods.BASES[k.name]
        assert base.__name__ == k.base and base.kind == k.name and issubclass(base, methods.Method)


def test_manager_registers_one_callback_per_row():
    assert manager.KIND_TABLE is kinds.KINDS


@pytest.mark.parametrize("command", ["list", "new-plugin"])
def test_cli_choices_are_the_table_names(command):
    option = next(p for p in cli.cli.commands[command].params if p.name == "kind")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == NAMES


def test_every_kind_has_scaffold_templates_and_a_contract_check():
    for k in kinds.KINDS:
        for part in ("method.py", "test.py"):
            text = scaffold._template(f"{k.template}/{part}")
            assert "{name}" in text, f"template {k.template}/{part} does not use the method's name"
        assert callable(getattr(testing, k.check)), f"toolkit_core.testing has no contract check {k.check}"


def test_no_template_folder_or_contract_check_outside_the_table():
    """A kind removed from the table leaves no orphan: every template folder and every ``_check_*`` is a row's."""
    folders = {p.name for p in (ROOT / "registry" / "templates").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {k.template for k in kinds.KINDS}
    checks = {n for n, obj in vars(testing).items() if n.startswith("_check_") and callable(obj)}
    assert checks == {k.check for k in kinds.KINDS}


def test_every_kind_base_class_is_a_table_row():
    """No base class with a ``kind`` exists in toolkit_core.methods beside the table's."""
    with_kind = {obj for obj in vars(methods).values()
                 if isinstance(obj, type) and issubclass(obj, methods.Method) and obj is not methods.Method
                 and obj.__module__ == methods.__name__}
    assert with_kind == set(methods.BASES.values())
    assert [b.kind for b in methods.BASES.values()] == list(NAMES)


def test_the_scaffold_fills_each_row_into_its_package(tmp_path):
    """The generated package registers its class with the row's hook and subclasses the row's base."""
    for k in kinds.KINDS:
        root = scaffold.write_plugin(f"probe_{k.name}", k.name, str(tmp_path / k.name))
        text = "\n".join(p.read_text() for p in root.rglob("*.py"))
        assert f"def {k.hook}(" in text, f"{k.name}: the scaffold does not implement {k.hook}"
        assert re.search(rf"class \w+\((\w+\.)?{k.base}\)", text), f"{k.name}: no subclass of {k.base}"


def test_check_method_dispatches_by_the_table(monkeypatch):
    """check_method calls the contract check the table names for the method's kind, and only that one."""
    called = []
    for k in kinds.KINDS:
        monkeypatch.setattr(testing, k.check, lambda obj, _n=k.name: called.append(_n))
    testing.check_method("fgsm")
    assert called == ["attack"]


def test_experiment_sections_are_the_table_sections():
    assert config.METHOD_SECTIONS == {k.section: k.name for k in kinds.KINDS if k.section}
    assert kinds.experiment_sections() == config.METHOD_SECTIONS
    # every method section is run by a stage, and the report defines it there (no orphan, no typo)
    assert set(config.STAGE_METHODS) == set(config.STAGES)
    assert {sec for secs in config.STAGE_METHODS.values() for sec in secs} == set(config.METHOD_SECTIONS)


def test_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of " + ", ".join(NAMES)):
        kinds.get_kind("certificate")
    assert kinds.get_kind("attack").base == "Attack"


def test_no_other_module_spells_out_the_kinds():
    """Three or more kind names or hook names quoted within a few lines, outside the table, are a list that
    would drift."""
    words = [*NAMES, *(k.hook for k in kinds.KINDS)]
    quoted = re.compile(r"""["'](""" + "|".join(map(re.escape, dict.fromkeys(words))) + r""")["']""")
    offenders = []
    for path in [*(ROOT / "toolkit_core").rglob("*.py"), *(ROOT / "registry").rglob("*.py")]:
        if path.name == "kinds.py":
            continue
        text = path.read_text()
        hits = [(m.start(), m.group(1)) for m in quoted.finditer(text)]
        for i, (pos, _) in enumerate(hits):
            near = {name for p, name in hits[i:] if p - pos < 300}
            if len(near) >= 3:
                offenders.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}: {sorted(near)}")
                break
    assert not offenders, "derive these from toolkit_core.kinds.KINDS:\n" + "\n".join(offenders)


def test_one_resolver_reads_every_way_of_naming_a_method():
    from toolkit_core import create
    from toolkit_core.catalog import resolve

    want = create("fgsm", eps=0.2)
    for spec in ("fgsm", ("fgsm", {"eps": 0.2}), {"name": "fgsm", "eps": 0.2}, {"method": "fgsm", "eps": 0.2}, want):
        got = resolve(spec, kind="attack") if isinstance(spec, (tuple, dict)) or spec is want else \
            resolve(spec, kind="attack", eps=0.2)
        assert type(got) is type(want) and got.eps == 0.2
    with pytest.raises(ValueError, match="'name'"):
        resolve({"eps": 0.2})
    with pytest.raises(TypeError, match="kind 'attack'"):
        resolve(want, kind="defense")
    with pytest.raises(TypeError, match="tuple"):
        resolve(("fgsm", 0.2))
