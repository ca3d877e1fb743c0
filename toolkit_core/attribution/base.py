"""Base class of the methods built on the modified-backprop engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from ..methods import AttributionMethod
from .composites import CompositeResolver
from .engine import LayerwiseResult, run_engine
from .rules import BUILTIN_RULES, Rule

__all__ = ["ModifiedBackprop"]


class ModifiedBackprop(AttributionMethod):
    """An attribution method defined by a composite of rules (see :mod:`toolkit_core.attribution`).

    Subclasses set ``multiply_input`` (``True``: the map is ``x * c(x)``, as for LRP; ``False``:
    the map is the modified gradient ``c(x)`` itself, as for GBP), may publish named ``rules`` and
    ``composites`` (looked up by :func:`toolkit_core.attribution.get_rule` / ``get_composite``), and
    implement :meth:`composite` (the plain-data composite for this instance) and, optionally,
    :meth:`rule_params` (parameters handed to rules created by name).
    """

    multiply_input: ClassVar[bool] = True
    rules: ClassVar[dict[str, type[Rule]]] = {}
    composites: ClassVar[dict[str, dict]] = {}

    def composite(self) -> Mapping[Any, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def rule_params(self) -> dict[str, Any]:
        return {}

    def resolver(self, model: nn.Module) -> CompositeResolver:
        return CompositeResolver(self.composite(), model, self.rule_params(), {**BUILTIN_RULES, **type(self).rules})

    def layerwise(
        self, model: nn.Module, x: Tensor, target: Any = None, record: bool | list[str] | None = True,
        inject: Mapping[str, Tensor] | None = None, inject_kind: str = "relevance",
    ) -> LayerwiseResult:
        """Input relevance plus the relevance at recorded layers (see :func:`run_engine`)."""
        return run_engine(
            model, x, target, self.resolver(model).rule_for, method=self.name,
            multiply_input=self.multiply_input, record=record, inject=inject, inject_kind=inject_kind,
            low_memory=bool(getattr(self, "low_memory", False)),
        )

    def attribute(self, model, x, target):
        return self.layerwise(model, x, target, record=None).attribution
