"""Find plugin entry points and apply the allow/block lists *before* anything is imported.

We use the standard library's :mod:`importlib.metadata` (as pluggy does); the third-party
``entrypoints`` package is maintenance-only and points to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

GROUP = "torchtrust.plugins"
ALLOW_ENV = "TORCHTRUST_PLUGINS"
BLOCK_ENV = "TORCHTRUST_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Candidate:
    """An entry point found in the environment, not yet imported."""

    name: str  # entry-point name, what the allow/block lists refer to
    value: str  # "module" or "module:attr"
    distribution: str
    version: str
    entry_point: metadata.EntryPoint


def _names(raw: str | None) -> set[str] | None:
    if raw is None or not raw.strip():
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def find_candidates(group: str = GROUP) -> list[Candidate]:
    """Every entry point of ``group`` in the environment, in a stable order (by name)."""
    found = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        found.append(
            Candidate(
                name=ep.name,
                value=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "<unknown>",
                version=dist.version if dist is not None else "",
                entry_point=ep,
            )
        )
    return sorted(found, key=lambda c: (c.name, c.distribution))


def split_enabled(
    candidates: Iterable[Candidate],
    allow: str | None = None,
    block: str | None = None,
) -> tuple[list[Candidate], list[Candidate]]:
    """Split into (enabled, disabled) by the allow list and block list (comma-separated names).

    ``allow``/``block`` default to the environment variables ``TORCHTRUST_PLUGINS`` and
    ``TORCHTRUST_DISABLE_PLUGINS``. The block list wins over the allow list.
    """
    allowed = _names(os.environ.get(ALLOW_ENV) if allow is None else allow)
    blocked = _names(os.environ.get(BLOCK_ENV) if block is None else block) or set()
    enabled, disabled = [], []
    candidates = list(candidates)
    for c in candidates:
        off = c.name in blocked or (allowed is not None and c.name not in allowed)
        (disabled if off else enabled).append(c)
    return enabled, disabled


def unknown_selection(candidates: Iterable[Candidate], allow: str | None = None,
                      block: str | None = None) -> list[str]:
    """One message per name in the allow/block lists that no installed plugin has (a typo selects nothing)."""
    import difflib

    known = sorted({c.name for c in candidates})
    problems = []
    for env, raw in ((ALLOW_ENV, allow), (BLOCK_ENV, block)):
        names = _names(os.environ.get(env) if raw is None else raw) or set()
        for name in sorted(names - set(known)):
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(f"{env} names '{name}', but no installed plugin has that name; {hint}"
                            f"installed: {', '.join(known) or 'none'}")
    return problems
