"""The core (``toolkit_core/``, ``registry/``) names no plugin outside docstrings and comments.

Every ``.py`` file of the core is read with :mod:`tokenize`; comments and docstrings (any statement
that is only a string) are dropped. What is left (identifiers and string literals, f-strings
included) is compared with every plugin's entry-point name, its distribution name
(``torchtrust-pgd``), its package (``torchtrust_pgd``), and every method name the installed plugins
register (``apgd_t``, ``input_x_gradient``, ...), all read from ``plugins/*/pyproject.toml`` and the
catalog rather than spelled out here.

How a name counts as named:

* a package or distribution name anywhere (an identifier, a string): always;
* a distinctive name (``pgd``, ``gbp``, ``itid``, ...): an identifier with it as one of its
  ``_``-separated parts (``_pgd_defaults``), or a string with it as a word (``"pgd"``,
  ``f"... apgd_t ..."``);
* a name that is also an ordinary word of the field (:data:`ORDINARY_WORDS`: ``gradient``,
  ``margin``, ...): only a string literal equal to it, which is how a special case is spelled
  (``name == "gaussian"``, ``create("gaussian")``). The core may speak of gradients and CSS margins.

A name the core itself defines may appear (:data:`CORE_NAMES`): the attribution rules the core ships
(``"gradient"``, ``"lrp_epsilon"``, ... are keys of ``attribution.rules.BUILTIN_RULES``; issue 12
moved every rule into the core, so they are core concepts, and plugins look them up, never the
reverse) and the keys of ``generative.modes.mode_statistics`` (the mode_coverage plugin exposes
those core statistics as metrics under the same names). The few remaining literals are listed in
:data:`ALLOWED` with the reason; a line there that no longer occurs fails the test too, so the list
cannot go stale.
"""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

import pytest
import tomllib

from .source_tokens import code_tokens, literal

ROOT = Path(__file__).resolve().parents[1]
CORE_FILES = sorted([*(ROOT / "toolkit_core").rglob("*.py"), *(ROOT / "registry").rglob("*.py")])

#: plugin or method names that are ordinary words of the field: only a string equal to one is a naming.
ORDINARY_WORDS = frozenset({"gradient", "margin", "gaussian", "calibration", "sharpness", "square"})

#: (file, literal fragment) -> why it may stay. Only strings; an identifier never may.
ALLOWED: dict[tuple[str, str], str] = {
    ("toolkit_core/attribution/engine.py", "docs/methods/lrp.md"):
        "an error message pointing at the spec page of the core's LRP rules (attribution/rules.py)",
    ("toolkit_core/attribution/rules.py", "rectgrad: the output of"):
        "the error of the core's own rectgrad_relu rule (attribution/rules.py), prefixed with the rule's family",
    ("toolkit_core/kernels.py", "torchtrust_gbp::mask"):
        "an example of the 'namespace::op' format in declare()'s error message; nothing branches on it",
}


def _plugin_names() -> dict[str, set[str]]:
    """Plugin folder -> its entry-point names, distribution name, package names."""
    out: dict[str, set[str]] = {}
    for toml in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(toml.read_text())["project"]
        names = {project["name"], project["name"].replace("-", "_")}
        for group in project.get("entry-points", {}).values():
            for entry, target in group.items():
                names |= {entry, target.split(":")[0].split(".")[0]}
        out[toml.parent.name] = names
    return out


def _method_names() -> set[str]:
    import registry

    return set(registry.get_manager().list_methods())


def _core_names() -> set[str]:
    import torch

    from toolkit_core.attribution.rules import BUILTIN_RULES
    from toolkit_core.generative.modes import mode_statistics

    stats = mode_statistics(torch.zeros(1, 2), torch.zeros(1, 2), 1.0)
    return set(BUILTIN_RULES) | {k for k in stats if k != "counts"}


def _word(name: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")


def _findings(paths, names: set[str], always: set[str], core: set[str]):
    patterns = {n: _word(n) for n in names}
    found = []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        for t in code_tokens(path):
            text = t.string
            if t.type == tokenize.NAME:
                # an identifier is a naming for a distinctive name, never for an ordinary word
                hits = {n for n in names if n in text and (n in always or n not in ORDINARY_WORDS)
                        and _contains_parts(text.split("_"), n.split("_"))}
            else:
                body = literal(text)
                hits = set()
                for n in (n for n in names if n in text):
                    if n in ORDINARY_WORDS and n not in always:
                        if body == n and n not in core:
                            hits.add(n)
                    elif patterns[n].search(text):
                        words = {w for w in re.findall(r"[A-Za-z0-9_]+", body) if patterns[n].search(w)}
                        if n in always or words - core:
                            hits.add(n)
                if hits and any(frag in text for (f, frag) in ALLOWED if f == rel):
                    hits = set()
            for n in sorted(hits):
                found.append(f"{rel}:{t.start[0]}: {n!r} in {text[:90]!r}")
    return found


def _contains_parts(parts: list[str], sub: list[str]) -> bool:
    return any(parts[i:i + len(sub)] == sub for i in range(len(parts) - len(sub) + 1))


def test_the_core_names_no_plugin():
    plugins = _plugin_names()
    assert len(plugins) >= 30, f"found only {len(plugins)} plugins under plugins/"
    always = {n for names in plugins.values() for n in names if n.startswith("torchtrust")}
    names = {n for ns in plugins.values() for n in ns} | _method_names()
    found = _findings(CORE_FILES, names, always, _core_names())
    assert not found, (
        "the core names a plugin or a plugin's method outside docstrings and comments; ask the method's class "
        "(experiment_variants, training_params, ...) or the catalog instead:\n" + "\n".join(found)
    )


def test_every_allowed_literal_still_occurs():
    for (rel, fragment), why in ALLOWED.items():
        tokens = code_tokens(ROOT / rel)
        assert any(fragment in t.string for t in tokens if t.type == tokenize.STRING), (
            f"{rel} no longer contains {fragment!r} ({why}): remove it from ALLOWED"
        )


def test_ordinary_words_are_plugin_or_method_names():
    """Each exemption names a real plugin or method, so the list shrinks when one goes."""
    names = {n for ns in _plugin_names().values() for n in ns} | _method_names()
    assert ORDINARY_WORDS <= names


@pytest.mark.parametrize("snippet, name", [
    ('if name == "pgd":\n    pass\n', "pgd"),
    ('DEFAULTS = {"apgd": 1}\n', "apgd"),
    ('x = create("gaussian")\n', "gaussian"),
    ('import torchtrust_pgd\n', "torchtrust_pgd"),
    ('def f():\n    return _pgd_budget\n', "pgd"),
    ('msg = f"run {k} with pgd first"\n', "pgd"),
    ('spec = "lrp_custom"\n', "lrp"),
])
def test_the_scanner_catches_a_naming(tmp_path, snippet, name):
    path = tmp_path / "probe.py"
    path.write_text(snippet)
    got = _findings([path], {"pgd", "apgd", "gaussian", "torchtrust_pgd", "lrp"}, {"torchtrust_pgd"}, {"lrp_epsilon"})
    assert repr(name) in {f.split(": ", 1)[1].split(" in ")[0] for f in got}, got


@pytest.mark.parametrize("snippet", [
    '"""A docstring that mentions pgd and gaussian."""\n',
    'def f():\n    """pgd."""\n    return 1  # pgd\n',
    'CSS = "body{margin:2rem}"\n',
    'msg = "gradient masking? a gaussian-noise check"\n',
    'rule = "lrp_epsilon"\n',
    'def gradient_norm(margin):\n    return margin\n',
])
def test_the_scanner_leaves_prose_and_core_names(tmp_path, snippet):
    path = tmp_path / "probe.py"
    path.write_text(snippet)
    got = _findings([path], {"pgd", "gaussian", "margin", "gradient", "lrp"}, set(), {"lrp_epsilon"})
    assert got == []
