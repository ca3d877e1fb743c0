"""Conveniences over the process-wide plugin catalog (the registry is reached lazily)."""

from __future__ import annotations

from typing import Any

from .methods import Method, MethodInfo


def _manager():
    from registry import get_manager  # lazy: toolkit_core never imports registry at module level

    return get_manager()


def list_methods(kind: str | None = None, pattern: str | None = None) -> list[str]:
    """Names of the installed methods, optionally of one ``kind`` and matching a glob ``pattern``.

    >>> list_methods("attribution", "lrp*")   # doctest: +SKIP
    ['lrp']
    """
    return _manager().list_methods(kind, pattern)


def get_info(name: str) -> MethodInfo:
    """The :class:`~toolkit_core.methods.MethodInfo` of method ``name`` (no instance is created)."""
    return _manager().get_info(name)


def create(name: str, /, **params: Any) -> Method:
    """Create method ``name`` with keyword parameters, validated against its constructor.

    >>> pgd = create("pgd", eps=8 / 255, steps=10)   # doctest: +SKIP
    >>> alp = create("alp", attack=pgd)               # doctest: +SKIP
    """
    return _manager().create(name, **params)


def resolve(method: str | Method, kind: str | None = None, **params: Any) -> Method:
    """Accept a method object or a registered name (created with ``params``)."""
    if isinstance(method, Method):
        if params:
            raise TypeError(f"parameters {sorted(params)} given together with a method object; "
                            "pass them when creating the object instead")
        if kind is not None and method.kind != kind:
            raise TypeError(f"expected a method of kind '{kind}', got {method!r} of kind '{method.kind}'")
        return method
    if not isinstance(method, str):
        raise TypeError(f"expected a method name or a method object, got {method!r}")
    return _manager().create(method, kind=kind, **params)
