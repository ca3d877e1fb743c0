"""Exceptions raised by torchtrust. Each message says what was wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TorchtrustError(Exception):
    """Base class of every torchtrust error."""


class UnknownMethodError(TorchtrustError, KeyError):
    """A method name that no installed plugin registers."""

    def __init__(self, name: str, known: Iterable[str], kind: str | None = None, hint: str = ""):
        known = sorted(known)
        where = f" of kind '{kind}'" if kind else ""
        msg = f"no method{where} named '{name}'"
        lower = {k.lower(): k for k in known}
        close = [lower[name.lower()]] if name.lower() in lower else [
            lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.5)]
        if hint:
            msg += f": {hint}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        else:
            msg += "."
        msg += " Run `torchtrust list` to see the installed methods."
        self.name, self.suggestions = name, close
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would add quotes
        return self.args[0]


class DuplicateMethodError(TorchtrustError):
    """Two plugins register the same method name."""

    def __init__(self, name: str, first: str, second: str, second_plugin: str):
        super().__init__(
            f"method '{name}' is registered by both {first} and {second}; uninstall one of them, "
            f"or disable one with TORCHTRUST_DISABLE_PLUGINS={second_plugin}"
        )
        self.name, self.providers = name, (first, second)


class ParameterError(TorchtrustError, TypeError):
    """A method was created with an unknown, missing or ill-typed parameter."""


class PluginRegistrationError(TorchtrustError):
    """A plugin registered something that is not a valid method class."""


class PluginSelectionError(TorchtrustError):
    """``TORCHTRUST_PLUGINS`` / ``TORCHTRUST_DISABLE_PLUGINS`` name plugins that are not installed."""
