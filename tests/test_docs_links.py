"""Every document the code and the docs cite exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"\b((?:docs|benchmarks|examples)/[\w./-]+\.(?:md|py|toml))")
LINK = re.compile(r"\]\(([^)#:\s]+\.(?:md|py|toml))(?:#[^)]*)?\)")


BARE = re.compile(r"(?<![\w./-])([A-Za-z][\w-]*\.md)\b")
SOURCES = ("toolkit_core/**/*.py", "registry/**/*.py", "plugins/*/src/**/*.py", "benchmarks/*.py",
           "docs/**/*.md", "README.md")
#: also read for citations: tests, templates, examples, packaging
MORE = ("tests/**/*.py", "plugins/*/tests/**/*.py", "plugins/*/pyproject.toml", "registry/templates/**/*.tmpl",
        "examples/**/*.toml", "pyproject.toml", "conftest.py")


def _sources(patterns=SOURCES):
    for pattern in patterns:
        yield from (p for p in ROOT.glob(pattern) if p.is_file() and p != Path(__file__).resolve())


def test_every_cited_file_exists():
    """A document that a benchmark script names (it writes it) may be absent until the script runs."""
    generated = {ref.rstrip(".") for p in ROOT.glob("benchmarks/*.py") for ref in CITED.findall(p.read_text())}
    missing = []
    for path in _sources():
        text = path.read_text()
        for ref in CITED.findall(text):
            if ref.rstrip(".") not in generated and not (ROOT / ref.rstrip(".")).exists():
                missing.append(f"{path.relative_to(ROOT)} cites {ref}")
        if path.suffix == ".md":
            for ref in LINK.findall(text):
                target = (path.parent / ref).resolve()
                if not target.exists() and str(target).removeprefix(f"{ROOT}/") not in generated:
                    missing.append(f"{path.relative_to(ROOT)} links {ref}")
    assert not missing, "\n".join(missing)


def test_no_citation_of_a_file_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in _sources() if "METHODS.md" in p.read_text()]
    assert not offenders, f"METHODS.md is not in the repository; cite docs/specs.md instead: {offenders}"


def test_every_document_named_anywhere_exists():
    """A bare ``name.md`` in code, tests, templates, examples or docs names a document of the repository
    (the method specifications are docs/specs.md and docs/methods/*.md, not a file outside it), or a
    file a benchmark script names (it writes it when it runs)."""
    docs = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts and "wip" not in p.parts}
    written = {ref for p in ROOT.glob("benchmarks/*.py") for ref in BARE.findall(p.read_text())}  # outputs
    assert "specs.md" in docs and len(docs) > 40, f"found only {len(docs)} documents"
    generated = {ref.rstrip(".") for p in ROOT.glob("benchmarks/*.py") for ref in CITED.findall(p.read_text())}
    missing, cites = [], []
    for path in _sources(SOURCES + MORE):
        text = path.read_text()
        missing += [f"{path.relative_to(ROOT)} names {ref}" for ref in BARE.findall(text) if ref not in docs | written]
        cites += [f"{path.relative_to(ROOT)} cites {ref}" for ref in CITED.findall(text)
                  if not (ROOT / ref.rstrip(".")).exists() and ref.rstrip(".") not in generated]
    assert not missing, "\n".join(missing)
    assert not cites, "\n".join(cites)
