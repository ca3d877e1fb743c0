"""Checks of a method's constructor arguments, with errors that say which method, which argument, what
was wrong and what it got: ``pgd: steps must be an integer >= 1, got 0``,
``pgd: eps must be a finite number >= 0 (the radius of the threat ball), got -1``.

One spelling of the checks every attack and certifier repeats (a radius, a step count, a seed, a
norm). ``bool`` is refused where a number is expected (``True`` is an ``int`` to Python, never a
step count). Imports nothing heavy (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["choice", "count", "number", "seed"]


def _meaning(meaning: str | None) -> str:
    return f" ({meaning})" if meaning else ""


def number(owner: str, key: str, value: object, *, low: float = 0.0, strict: bool = False,
           meaning: str | None = None) -> float:
    """``value`` as a float if it is a finite number ``>= low`` (``> low`` when ``strict``), else ``ValueError``."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > low if strict else value >= low))
    if not ok:
        bound = f"{'>' if strict else '>='} {low:g}"
        raise ValueError(f"{owner}: {key} must be a finite number {bound}{_meaning(meaning)}, got {value!r}")
    return float(value)


def count(owner: str, key: str, value: object, *, meaning: str | None = None) -> int:
    """``value`` if it is an integer ``>= 1`` (not a ``bool``), else ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {key} must be an integer >= 1{_meaning(meaning)}, got {value!r}")
    return value


def seed(owner: str, value: object) -> int | None:
    """``value`` if it is an integer or ``None`` (unseeded), else ``ValueError``."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{owner}: seed must be an integer or None, got {value!r}")
    return value


def choice(owner: str, key: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if value not in choices:
        listed = " or ".join(repr(c) for c in choices) if len(choices) <= 2 else f"one of {list(choices)}"
        raise ValueError(f"{owner}: {key} must be {listed}, got {value!r}")
    return value  # type: ignore[return-value]
