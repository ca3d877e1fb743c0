"""The plugin manager: entry points -> pluggy -> a catalog of method classes.

Loading is guarded plugin by plugin: an import error, a hook that raises (or calls ``sys.exit``: every
``BaseException`` but ``KeyboardInterrupt`` is caught), a hook name that is not one of the hook
specifications (a typo), a module with no hook at all, an invalid class or a name already taken by
another plugin marks *that* plugin ``failed`` (with the error), and all of its registrations are
dropped; every other plugin keeps working. What plugins print while they load goes to stderr, so
``--json`` output stays valid. Names in ``TORCHTRUST_PLUGINS``/``TORCHTRUST_DISABLE_PLUGINS`` that no
installed plugin has are an error (:attr:`PluginManager.problems`), not an empty selection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import sys
import traceback
import types
from collections.abc import Iterable
from typing import Any

import pluggy

from toolkit_core import hookspecs
from toolkit_core.errors import (
    DuplicateMethodError,
    PluginRegistrationError,
    UnknownMethodError,
)
from toolkit_core.kinds import KINDS as KIND_TABLE
from toolkit_core.methods import BASES, Method, MethodInfo, describe, validate_params

from .discovery import Candidate, find_candidates, split_enabled, unknown_selection

LOADED, FAILED, DISABLED = "loaded", "failed", "disabled"


@dataclasses.dataclass
class PluginRecord:
    """What happened to one plugin."""

    name: str  # entry-point name (or the name given to register_module)
    distribution: str
    version: str
    status: str  # loaded | failed | disabled
    error: str | None = None
    traceback: str | None = None
    methods: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "methods": list(self.methods),
        }


class PluginManager:
    """Discovers plugins and holds the catalog of methods they register.

    Nothing is imported until :meth:`load` (or the first lookup) runs. ``candidates`` replaces
    discovery from the environment (tests); ``allow``/``block`` replace the environment variables.
    """

    def __init__(
        self,
        candidates: Iterable[Candidate] | None = None,
        allow: str | None = None,
        block: str | None = None,
    ):
        self._candidates = None if candidates is None else list(candidates)
        self._allow, self._block = allow, block
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginRecord] = {}
        self._catalog: dict[str, MethodInfo] = {}
        self._conflicts: dict[str, DuplicateMethodError] = {}
        self._loaded = False
        #: Problems with the plugin selection itself (unknown names in the allow/block lists).
        self.problems: list[str] = []

    # ------------------------------------------------------------------ loading

    def load(self) -> PluginManager:
        """Import every enabled plugin and run its hooks (once)."""
        if self._loaded:
            return self
        self._loaded = True
        candidates = find_candidates() if self._candidates is None else self._candidates
        self.problems = unknown_selection(candidates, self._allow, self._block)
        enabled, disabled = split_enabled(candidates, self._allow, self._block)
        for c in disabled:
            self.plugins.setdefault(c.name, PluginRecord(c.name, c.distribution, c.version, DISABLED))
        for c in enabled:
            record = PluginRecord(c.name, c.distribution, c.version, LOADED)
            first = self.plugins.get(c.name)
            if first is not None:  # two distributions, one entry-point name: the second is reported, not hidden
                key = f"{c.name} ({c.distribution})"
                record.name = key
                record.status, record.error = FAILED, (
                    f"entry-point name '{c.name}' is used by both '{first.distribution}' and '{c.distribution}'; "
                    f"uninstall one of them (pip uninstall {c.distribution})")
                self.plugins[key] = record
                continue
            self.plugins[c.name] = record
            try:
                with _stdout_to_stderr():
                    module = c.entry_point.load()
            except BaseException as exc:  # noqa: BLE001 - a plugin must never break the toolkit
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._fail(record, exc, "import failed")
                continue
            self._register(record, module)
        return self

    def register_module(
        self, module: Any, name: str | None = None, distribution: str = "<in-process>", version: str = ""
    ) -> PluginRecord:
        """Register an already-imported plugin module or object (for notebooks and tests)."""
        self.load()
        name = name or getattr(module, "__name__", repr(module))
        record = PluginRecord(name, distribution, version, LOADED)
        self.plugins[name] = record
        self._register(record, module)
        return record

    def _fail(self, record: PluginRecord, exc: BaseException, what: str) -> None:
        record.status = FAILED
        record.error = f"{what}: {type(exc).__name__}: {exc}"
        record.traceback = "".join(traceback.format_exception(exc))
        record.methods = []

    def _register(self, record: PluginRecord, module: Any) -> None:
        try:
            self._pm.register(module, name=record.name)
        except Exception as exc:  # invalid hook implementations (wrong name/arguments)
            self._fail(record, exc, "invalid hooks")
            return
        problem = self._check_hook_names(module)
        if problem:
            self._pm.unregister(module)
            record.status, record.error, record.methods = FAILED, problem, []
            return
        staged: list[MethodInfo] = []
        for row in KIND_TABLE:
            kind, hook_name, base = row.name, row.hook, BASES[row.name]
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not module:
                    continue

                def register(cls: type, _kind: str = kind, _base: type = base) -> None:
                    if not (isinstance(cls, type) and issubclass(cls, _base)):
                        raise PluginRegistrationError(
                            f"the {_kind} hook registered {cls!r}, which is not a subclass of "
                            f"toolkit_core.methods.{_base.__name__}"
                        )
                    staged.append(describe(cls, record.distribution, record.version, record.name))

                try:
                    with _stdout_to_stderr():
                        impl.function(register)
                except BaseException as exc:  # noqa: BLE001 - also SystemExit: a plugin never ends the process
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    self._pm.unregister(module)
                    self._fail(record, exc, f"hook {hook_name} raised")
                    return
        # Commit: a clash with an already-registered name fails this plugin, keeps the name ambiguous.
        for info in staged:
            other = self._catalog.get(info.name)
            if other is not None or info.name in self._conflicts:
                first = other or self._conflicts[info.name].providers[0]
                first_label = _label(other) if other is not None else first
                err = DuplicateMethodError(info.name, first_label, _label(info), record.name)
                self._conflicts[info.name] = err
                self._catalog.pop(info.name, None)
                record.status, record.error = FAILED, str(err)
        if record.status == FAILED:
            self._pm.unregister(module)
            record.methods = []
            for info in staged:  # keep what does not clash with anyone
                if info.name not in self._conflicts:
                    self._catalog[info.name] = info
                    record.methods.append(info.name)
            return
        for info in staged:
            self._catalog[info.name] = info
            record.methods.append(info.name)

    def _check_hook_names(self, module: Any) -> str | None:
        """Pluggy's hook-name validation, per plugin: a hook that is no specification is an error."""
        specs = set(hookspecs.KIND_HOOKS.values())
        impls = [hc.name for hc in (self._pm.get_hookcallers(module) or [])]
        unknown = sorted(n for n in impls if n not in specs)
        if unknown:
            parts = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(specs), n=1, cutoff=0.6)
                parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            return (f"unknown hook {', '.join(parts)}; the hooks are {', '.join(sorted(specs))} "
                    "(toolkit_core.hookspecs)")
        if not impls:
            return ("the plugin implements no hook; decorate a function named like one of "
                    f"{', '.join(sorted(specs))} with @toolkit_core.hookimpl")
        return None

    # ------------------------------------------------------------------ lookups

    def _check_selection(self) -> None:
        if self.problems:
            from toolkit_core.errors import PluginSelectionError

            raise PluginSelectionError("; ".join(self.problems))

    def list_methods(self, kind: str | None = None, pattern: str | None = None) -> list[str]:
        """Sorted names of the registered methods, optionally of one kind and matching a glob."""
        self.load()
        self._check_selection()
        if kind is not None and kind not in hookspecs.KINDS:
            raise ValueError(f"unknown kind '{kind}'; choose one of {', '.join(hookspecs.KINDS)}")
        names = [n for n, i in self._catalog.items() if kind is None or i.kind == kind]
        if pattern:
            names = fnmatch.filter(names, pattern)
        return sorted(names)

    def infos(self, kind: str | None = None) -> list[MethodInfo]:
        return [self._catalog[n] for n in self.list_methods(kind)]

    def get_info(self, name: str, kind: str | None = None) -> MethodInfo:
        """The :class:`MethodInfo` of ``name``; unknown names get a did-you-mean suggestion."""
        self.load()
        self._check_selection()
        if name in self._conflicts:
            raise self._conflicts[name]
        info = self._catalog.get(name)
        if info is None or (kind is not None and info.kind != kind):
            off = [r.name for r in self.plugins.values() if r.status == DISABLED]
            hint = ""
            if name in off:
                hint = (f"its plugin '{name}' is installed but disabled by TORCHTRUST_PLUGINS / "
                        "TORCHTRUST_DISABLE_PLUGINS; enable it there")
            elif off:
                hint = f"disabled plugins ({', '.join(off)}) may provide it"
            raise UnknownMethodError(name, self.list_methods(kind), kind, hint=hint)
        return info

    def create(self, name: str, /, kind: str | None = None, **params: Any) -> Method:
        """Create the method ``name`` with validated keyword parameters."""
        info = self.get_info(name, kind)
        validate_params(info, params)
        try:
            with _stdout_to_stderr():
                obj = info.cls(**params)
        except SystemExit as exc:  # plugin code never ends the process
            raise RuntimeError(f"creating method '{name}' ({info.provider}) called sys.exit({exc.code!r}); "
                               "report this to the plugin's authors") from None
        obj.__dict__["_info"] = info
        return obj

    @property
    def failed(self) -> list[PluginRecord]:
        self.load()
        return [r for r in self.plugins.values() if r.status == FAILED]


@contextlib.contextmanager
def _stdout_to_stderr():
    """What a plugin prints while it loads goes to stderr, so machine-readable stdout stays clean."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _label(info: MethodInfo) -> str:
    return f"'{info.provider}" + (f" {info.version}'" if info.version else "'")


# ---------------------------------------------------------------------- the default manager

_default: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager, created (and plugins loaded) on first use, never at import."""
    global _default
    if _default is None:
        _default = PluginManager().load()
    return _default


def set_manager(manager: PluginManager | None) -> PluginManager | None:
    """Replace the process-wide manager (``None`` to rediscover on next use); returns the old one."""
    global _default
    old, _default = _default, manager
    return old


def plugin_module(**hooks: Any) -> types.SimpleNamespace:
    """Make a plugin object from hook functions, e.g. ``plugin_module(torchtrust_register_metrics=f)``."""
    ns = types.SimpleNamespace()
    for hook_name, fn in hooks.items():
        setattr(ns, hook_name, hookspecs.hookimpl(fn))
    return ns
