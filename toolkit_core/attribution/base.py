"""Base class of the methods built on the modified-backprop engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from ..methods import AttributionMethod
from .composites import CompositeResolver
from .engine import LayerwiseResult, run_engine
from .rules import BUILTIN_RULES, Rule

__all__ = ["ModifiedBackprop", "ActivationMethod"]


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
    #: products of two input-dependent tensors: "uniform" (AttnLRP's equal split, for methods that
    #: conserve relevance) or "refuse" (an error if relevance reaches one)
    bilinear: ClassVar[str] = "uniform"

    def composite(self) -> Mapping[Any, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def overrides(self) -> dict[Any, Any]:
        """The user's ``composite=`` dict, merged over the method's own composite (every method built
        on the engine accepts one, e.g. ``gbp(composite={MyActivation: "gbp_relu"})``)."""
        extra = getattr(self, "composite_override", None)
        if extra is None:
            return {}
        if not isinstance(extra, Mapping):
            raise TypeError(
                f"{self.name}: composite must be a dict mapping layers to rules, got {type(extra).__name__}"
            )
        return dict(extra)

    def rule_params(self) -> dict[str, Any]:
        return {}

    def resolver(self, model: nn.Module) -> CompositeResolver:
        return CompositeResolver(self.composite(), model, self.rule_params(), {**BUILTIN_RULES, **type(self).rules})

    def layerwise(
        self, model: nn.Module, x: Tensor, target: Any = None, record: bool | list[str] | None = True,
        inject: Mapping[str, Tensor] | None = None, inject_kind: str = "relevance",
    ) -> LayerwiseResult:
        """Input relevance plus the relevance at recorded layers (see :func:`run_engine`)."""
        resolver = self.resolver(model)
        return run_engine(
            model, x, target, resolver.rule_for, method=self.name,
            multiply_input=self.multiply_input, record=record, inject=inject, inject_kind=inject_kind,
            low_memory=bool(getattr(self, "low_memory", False)), positions=resolver.positions,
            bilinear=self.bilinear,
        )

    def attribute(self, model, x, target):
        return self.layerwise(model, x, target, record=None).attribution


class ActivationMethod(ModifiedBackprop):
    """A method that differs from the plain gradient only at activations (GBP, deconvnet, RectGrad):
    subclasses say only :meth:`activation_rule`; conv, dense and BatchNorm layers take the gradient.

    Activations are ReLU-like (``1[x > 0]``) or gates ``x * s(x)`` (GELU, SiLU, Hardswish, Mish) whose
    ``s`` the rule uses in place of the ReLU mask. Products of two input-dependent tensors other than
    gates have no rule here (``bilinear = "refuse"``).
    """

    multiply_input = False
    bilinear = "refuse"

    def activation_rule(self) -> Rule:  # pragma: no cover - abstract
        raise NotImplementedError

    def composite(self):
        return {"activation": self.activation_rule(), "conv": "gradient", "linear": "gradient", "bn": "gradient",
                **self.overrides()}
