"""Every document the code and the docs cite exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"\b((?:docs|benchmarks|examples)/[\w./-]+\.(?:md|py|toml))")
LINK = re.compile(r"\]\(([^)#:\s]+\.(?:md|py|toml))(?:#[^)]*)?\)")


def _sources():
    for pattern in ("toolkit_core/**/*.py", "registry/**/*.py", "plugins/*/src/**/*.py", "benchmarks/*.py",
                    "docs/**/*.md", "README.md"):
        yield from ROOT.glob(pattern)


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
