"""Run-time discovery of torchtrust plugins and the ``torchtrust`` command line.

Importing this package imports neither torch nor any plugin; the catalog is built on first use.
"""

from .discovery import ALLOW_ENV, BLOCK_ENV, GROUP, Candidate, find_candidates, split_enabled
from .manager import (
    DISABLED,
    FAILED,
    LOADED,
    PluginManager,
    PluginRecord,
    get_manager,
    plugin_module,
    set_manager,
)

__all__ = [
    "ALLOW_ENV",
    "BLOCK_ENV",
    "DISABLED",
    "FAILED",
    "GROUP",
    "LOADED",
    "Candidate",
    "PluginManager",
    "PluginRecord",
    "find_candidates",
    "get_manager",
    "plugin_module",
    "set_manager",
    "split_enabled",
]
