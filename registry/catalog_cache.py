"""A cache of what ``torchtrust list / info / plugins`` print, so they answer without importing torch.

Loading the catalog imports every plugin (and with it torch: ~2-4 s, ~700 MB). What those commands
show is plain data (names, summaries, parameters, kernel backends, plugin status), so the first call
stores it in ``<cache dir>/catalog-<env>.json`` and later calls read it back, as long as its **key**
still matches. The key is computed without importing any plugin:

* every entry point of the ``torchtrust.plugins`` group, with its distribution's ``.dist-info`` folder
  (name and version) and that folder's modification time (a reinstall);
* the newest modification time of the ``.py`` files of the package each entry point imports, found
  where Python would import it from without importing it (an editable install changes code without
  changing its version), and the same for ``toolkit_core`` and ``registry``;
* the versions of torch and triton, the Python version and prefix, and the environment variables that
  change what is loaded or shown (``TORCHTRUST_PLUGINS``, ``TORCHTRUST_DISABLE_PLUGINS``,
  ``TORCHTRUST_KERNELS``).

Any change rebuilds the cache on the next call. The cache dir is ``$TORCHTRUST_CACHE_DIR``, else
``$XDG_CACHE_HOME/torchtrust``, else ``~/.cache/torchtrust``; ``TORCHTRUST_NO_CACHE=1`` turns it off.
An unreadable or unwritable cache is ignored (the catalog is then loaded as before).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .discovery import ALLOW_ENV, BLOCK_ENV, GROUP

FORMAT = 1
_ENV_KEYS = (ALLOW_ENV, BLOCK_ENV, "TORCHTRUST_KERNELS")


def cache_dir() -> Path:
    if os.environ.get("TORCHTRUST_CACHE_DIR"):
        return Path(os.environ["TORCHTRUST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "torchtrust"


def cache_path() -> Path:
    env = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return cache_dir() / f"catalog-{env}.json"


def enabled() -> bool:
    return os.environ.get("TORCHTRUST_NO_CACHE", "") in ("", "0")


_SKIP_DIRS = {"__pycache__", "build", "dist", "node_modules", "tests"}


def _newest_mtime(root: Path) -> int:
    newest = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
        for f in filenames:
            if f.endswith(".py"):
                try:
                    newest = max(newest, os.stat(os.path.join(dirpath, f)).st_mtime_ns)
                except OSError:
                    pass
    return newest


def _package_stamp(module: str) -> int:
    """Newest .py mtime of ``module``'s top-level package, found without importing it (0 if not found)."""
    from importlib.util import find_spec

    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        return 0
    if spec is None:
        return 0
    if spec.submodule_search_locations:
        return max((_newest_mtime(Path(p)) for p in spec.submodule_search_locations), default=0)
    if spec.origin and os.path.exists(spec.origin):
        return os.stat(spec.origin).st_mtime_ns
    return 0


def _dist_stamp(dist, module: str) -> tuple[str, int, int]:
    """(the dist-info folder: name and version; its mtime: a reinstall; newest .py mtime of the code).

    Read from the file system only: parsing every METADATA file is what makes discovery slow. The code
    is found where Python would import it from (an editable install changes code, not its version).
    """
    path = getattr(dist, "_path", None)
    code = _package_stamp(module.split(":", 1)[0].split(".", 1)[0])
    if path is None:
        return (f"{dist.metadata['Name']}-{dist.version}", 0, code)
    path = Path(path)
    try:
        return (path.name, path.stat().st_mtime_ns, code)
    except OSError:
        return (path.name, 0, code)


def _installed(name: str) -> str:
    try:
        path = getattr(metadata.distribution(name), "_path", None)
    except metadata.PackageNotFoundError:
        return ""
    return Path(path).name if path is not None else name


def compute_key() -> str:
    """A hash of everything the cached catalog depends on (no plugin is imported)."""
    parts: list[Any] = [FORMAT, sys.version, sys.prefix, {k: os.environ.get(k, "") for k in _ENV_KEYS},
                        _installed("torch"), _installed("triton"), _installed("torchtrust"),
                        _package_stamp("toolkit_core"), _package_stamp("registry")]
    eps = []
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        eps.append((ep.name, ep.value, *(_dist_stamp(dist, ep.value) if dist is not None else ("", 0, 0))))
    parts.append(sorted(eps))
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def snapshot(manager) -> dict[str, Any]:
    """Everything list / info / plugins print, as plain data, from a loaded manager."""
    from toolkit_core import kernels

    methods = {}
    manager.load()
    problems = list(getattr(manager, "problems", []))
    for name in ([] if problems else manager.list_methods()):
        info = manager.get_info(name)
        kinfo = []
        for k in info.kernels:
            try:
                kern = kernels.get(k)
                kinfo.append({"name": k, "triton": kern.has_triton, "backend_cpu": kern.describe_backend("cpu"),
                              "backend_cuda": kern.describe_backend("cuda")})
            except KeyError:
                kinfo.append({"name": k, "triton": False, "backend_cpu": "undeclared", "backend_cuda": "undeclared"})
        methods[name] = {"info": info.to_dict(), "kernels": kinfo,
                         "default_reprs": {p.name: repr(p.default) for p in info.parameters}}
    return {
        "format": FORMAT,
        "methods": methods,
        "plugins": [r.to_dict() for r in manager.plugins.values()],
        "conflicts": sorted(getattr(manager, "_conflicts", {})),
        "problems": problems,
    }


def load_or_build(build) -> dict[str, Any]:
    """The cached snapshot if its key matches, else ``build()`` (a snapshot), stored for next time."""
    if not enabled():
        return build()
    key = compute_key()
    path = cache_path()
    try:
        data = json.loads(path.read_text())
        if data.get("key") == key and data.get("format") == FORMAT:
            data["from_cache"] = True
            return data
    except (OSError, ValueError):
        pass
    data = build()
    data["key"] = key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, default=str))
        tmp.replace(path)
    except OSError:
        pass
    data["from_cache"] = False
    return data
