"""Conveniences over the process-wide plugin catalog (the registry is reached lazily)."""

from __future__ import annotations

from collections.abc import Mapping
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


#: What :func:`resolve` accepts: a method object, a registered name, ``(name, params)`` or a dict
#: ``{"name": ..., **params}`` (``"method"`` is accepted for ``"name"``).
MethodLike = Method | str | tuple | Mapping


def resolve(method: MethodLike, kind: str | None = None, **params: Any) -> Method:
    """The one reader of "a method" given by a user or a config.

    ``method`` is a :class:`~toolkit_core.methods.Method` object (returned as is), a registered name
    (created with ``params``), a ``(name, params)`` tuple, or a dict ``{"name": name, **params}``
    (``"method"`` may stand for ``"name"``). ``kind`` checks the method's kind. Keyword ``params``
    are merged over the tuple's or dict's.
    """
    if isinstance(method, Mapping):
        spec = dict(method)
        key = "name" if "name" in spec else "method" if "method" in spec else None
        if key is None:
            raise ValueError(f"a method given as a dict needs a 'name' (or 'method') key, got keys {sorted(spec)}")
        method, params = spec.pop(key), {**spec, **params}
    elif isinstance(method, tuple):
        if len(method) != 2 or not isinstance(method[0], str) or not isinstance(method[1], Mapping):
            raise TypeError(f"a method given as a tuple must be (name, params dict), got {method!r}")
        method, params = method[0], {**method[1], **params}
    if isinstance(method, Method):
        if params:
            raise TypeError(f"parameters {sorted(params)} given together with a method object; "
                            "pass them when creating the object instead")
        if kind is not None and method.kind != kind:
            raise TypeError(f"expected a method of kind '{kind}', got {method!r} of kind '{method.kind}'")
        return method
    if not isinstance(method, str):
        raise TypeError(f"expected a method name, a (name, params) tuple, a dict with a 'name' key or a method "
                        f"object, got {method!r}")
    if not method:
        raise ValueError("the method name is empty; use a registered name (`torchtrust list`)")
    return _manager().create(method, kind=kind, **params)
