"""torchtrust's core: what a method is, and the engines that run methods.

Importing ``toolkit_core`` is cheap (no torch); the names below are loaded on first access.

Conveniences over the plugin catalog::

    import toolkit_core as tt
    tt.list_methods("attribution")        # ['deconvnet', 'gbp', 'gradient', ...]
    tt.get_info("gbp").parameters
    gbp = tt.create("gbp")
    heat = tt.attribute(model, x, target=3, method="gbp")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .hookspecs import KINDS, hookimpl

__version__ = "0.1.0"

# public name -> "module:attribute" (loaded lazily by __getattr__)
_LAZY = {
    # catalog
    "list_methods": "toolkit_core.catalog:list_methods",
    "get_info": "toolkit_core.catalog:get_info",
    "create": "toolkit_core.catalog:create",
    # what a method is
    "MethodInfo": "toolkit_core.methods:MethodInfo",
    "AttributionMethod": "toolkit_core.methods:AttributionMethod",
    "Attack": "toolkit_core.methods:Attack",
    "Defense": "toolkit_core.methods:Defense",
    "Prior": "toolkit_core.methods:Prior",
    "Metric": "toolkit_core.methods:Metric",
    # engines (each lands with its issue)
    "attribute": "toolkit_core.attribution:attribute",
    "render_heatmap": "toolkit_core.attribution.render:render_heatmap",
    "fit": "toolkit_core.training:fit",
    "evaluate_robustness": "toolkit_core.robustness:evaluate_robustness",
    "train_gan": "toolkit_core.generative:train_gan",
    "Experiment": "toolkit_core.experiment:Experiment",
}

__all__ = ["KINDS", "hookimpl", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'toolkit_core' has no attribute '{name}'")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .catalog import create, get_info, list_methods  # noqa: F401
    from .methods import Attack, AttributionMethod, Defense, MethodInfo, Metric, Prior  # noqa: F401
