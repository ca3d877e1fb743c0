"""``torchtrust new-plugin``: write a plugin package that installs, is discovered, and passes its test.

Each kind gets a small but real method and a test that asserts a number, so the generated package is
a working starting point rather than a stub. The templates are text files under ``registry/templates/``:
the package files at its top, and one folder per kind (the ``template`` column of the table of kinds,
:mod:`toolkit_core.kinds`) holding ``method.py.tmpl`` and ``test.py.tmpl``. They are filled with
:meth:`str.format` (``{name}``, ``{kind}``, ``{dist}``, ``{cls}``, ``{hook}``; literal braces doubled).
"""

from __future__ import annotations

import re
from pathlib import Path

from toolkit_core.kinds import KIND_NAMES, get_kind

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_TEMPLATES = Path(__file__).with_name("templates")


def _template(name: str) -> str:
    """The text of ``registry/templates/<name>.tmpl``."""
    return (_TEMPLATES / f"{name}.tmpl").read_text()


def write_plugin(name: str, kind: str, directory: str | None = None) -> Path:
    """Write the package for method ``name`` of ``kind`` into ``directory``; return its path."""
    if not _NAME.match(name):
        raise ValueError(f"plugin name must be a lowercase identifier like 'my_metric', got {name!r}")
    if kind not in KIND_NAMES:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KIND_NAMES)}")
    row = get_kind(kind)
    root = Path(directory or f"torchtrust-{name.replace('_', '-')}")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; choose another --dir")
    fields = {
        "name": name,
        "kind": kind,
        "dist": name.replace("_", "-"),
        "cls": "".join(part.capitalize() for part in name.split("_")),
        "hook": row.hook,
    }
    pkg = root / "src" / f"torchtrust_{name}"
    pkg.mkdir(parents=True, exist_ok=True)
    (root / "tests").mkdir(exist_ok=True)
    (root / "pyproject.toml").write_text(_template("pyproject.toml").format(**fields))
    (root / "README.md").write_text(
        f"# torchtrust-{fields['dist']}\n\nA torchtrust {kind} plugin providing `{name}`.\n\n"
        f"    pip install -e .\n    torchtrust info {name}\n    pytest tests\n"
    )
    (pkg / "__init__.py").write_text(_template("__init__.py").format(**fields))
    (pkg / "method.py").write_text(_template(f"{row.template}/method.py").format(**fields))
    test = _template("test_common.py").format(**fields) + "\n\n" + _template(f"{row.template}/test.py").format(**fields)
    (root / "tests" / f"test_{name}.py").write_text(test)
    return root
