"""A plugin that uses another plugin declares it in its ``pyproject.toml`` dependencies.

Three ways of using one, each read from the source (docs/architecture.md, "Plugins that import other
plugins"):

* importing its package (``from torchtrust_alp import ...``), in the plugin's source or its tests;
* creating one of its methods by name through the catalog: a string literal in the plugin's code
  (comments and docstrings dropped) equal to a method the other distribution registers
  (AutoAttack's members); a literal that only looks like one is listed in :data:`NOT_A_METHOD`;
* defaulting a constructor parameter to such a method's name (SmoothGrad's ``base="gradient"``).
"""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

import tomllib

from .source_tokens import code_tokens, literal

ROOT = Path(__file__).resolve().parents[1]
#: (distribution, literal) -> what the literal is instead of another plugin's method
NOT_A_METHOD = {
    ("torchtrust-smoothgrad", "square"): "SmoothGrad's own 'square' variant (SmoothGrad-Squared)",
    ("torchtrust-itid", "itid_enhance"): "a row label of the experiment's results that itid's seed claim reads",
}
IMPORT = re.compile(r"^\s*(?:from|import)\s+(torchtrust_\w+)", re.M)


def _plugins() -> dict[str, dict]:
    """package -> {"dist", "folder", "deps"} for every plugin under plugins/."""
    out = {}
    for toml in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(toml.read_text())["project"]
        deps = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].strip().lower().replace("_", "-")
                for d in project.get("dependencies", [])}
        package = project["name"].replace("-", "_")
        out[package] = {"dist": project["name"], "folder": toml.parent, "deps": deps}
    return out


def _providers() -> dict[str, str]:
    import registry

    return {i.name: i.provider for i in registry.get_manager().infos()}


def _uses(package: str, plugin: dict, plugins: dict, providers: dict) -> dict[str, str]:
    """distribution used -> where (first place found). A literal that is a rule name of the core
    (``"gradient"`` in a composite) names the core's rule, not a method."""
    from toolkit_core.attribution.rules import BUILTIN_RULES

    core = set(BUILTIN_RULES)
    used: dict[str, str] = {}
    folder = plugin["folder"]
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(ROOT)
        for other in IMPORT.findall(path.read_text()):
            if other != package and other in plugins:
                used.setdefault(plugins[other]["dist"], f"{rel} imports {other}")
        if "tests" in path.relative_to(folder).parts:
            continue
        for t in code_tokens(path):
            name = literal(t.string) if t.type == tokenize.STRING else None
            dist = providers.get(name)
            if (dist and dist != plugin["dist"] and (plugin["dist"], name) not in NOT_A_METHOD
                    and name not in core):
                used.setdefault(dist, f"{rel}:{t.start[0]} creates {name!r}")
    return used


def _defaults(dist: str, providers: dict) -> dict[str, str]:
    from toolkit_core.catalog import get_info

    used = {}
    for name, provider in providers.items():
        if provider != dist:
            continue
        for p in get_info(name).parameters:
            other = providers.get(p.default) if isinstance(p.default, str) else None
            if other and other != dist:
                used.setdefault(other, f"{name}({p.name}={p.default!r})")
    return used


def test_every_plugin_declares_the_plugins_it_uses():
    plugins, providers = _plugins(), _providers()
    assert len(plugins) >= 30
    undeclared = []
    for package, plugin in plugins.items():
        used = {**_defaults(plugin["dist"], providers), **_uses(package, plugin, plugins, providers)}
        undeclared += [f"{plugin['dist']}: {where}, but {dist} is not in its dependencies"
                       for dist, where in used.items() if dist not in plugin["deps"]]
    assert not undeclared, "\n".join(undeclared)


def test_the_known_uses_are_found():
    """The reader sees the uses docs/architecture.md lists (so an empty result above means something)."""
    plugins, providers = _plugins(), _providers()
    found = {}
    for package, plugin in plugins.items():
        used = {**_defaults(plugin["dist"], providers), **_uses(package, plugin, plugins, providers)}
        found[plugin["dist"]] = set(used)
    assert {"torchtrust-alp"} <= found["torchtrust-aalp"]
    assert {"torchtrust-itid"} <= found["torchtrust-itid-enhance"]
    assert {"torchtrust-randomized-smoothing"} <= found["torchtrust-drs"]
    assert {"torchtrust-pgd-at"} <= found["torchtrust-accelat"]
    assert {"torchtrust-apgd", "torchtrust-fab", "torchtrust-square"} <= found["torchtrust-autoattack"]
    assert found["torchtrust-smoothgrad"] == {"torchtrust-gradient"}


def test_every_exemption_still_occurs():
    for (dist, name), why in NOT_A_METHOD.items():
        folder = ROOT / "plugins" / dist.removeprefix("torchtrust-").replace("-", "_")
        assert any(literal(t.string) == name for p in folder.glob("src/**/*.py") for t in code_tokens(p)
                   if t.type == tokenize.STRING), f"{dist} no longer has {name!r} ({why}): remove it from NOT_A_METHOD"


def test_core_tests_reach_plugins_through_the_catalog_only():
    """A plugin's own numbers are tested beside it (plugins/<name>/tests); the core's tests create methods by
    name, so they import no plugin package."""
    import ast

    packages = set(_plugins())
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"tests/{path.name}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0] in packages]
    assert not offenders, "\n".join(offenders)
