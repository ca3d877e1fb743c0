"""Base classes of the methods built on the modified-backprop engine.

A method says only what differs from its base: :class:`ActivationMethod` (GBP, deconvnet, RectGrad)
names its activation rule; :class:`RelevanceMethod` (LRP, DTD) gives the rules of its conv and
dense layers. The rules themselves are all in :mod:`.rules`; a plugin may hand them fused kernels
(:attr:`ModifiedBackprop.rule_kernels`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from ..methods import AttributionMethod
from .composites import CompositeResolver
from .engine import LayerwiseResult, run_engine
from .rules import BUILTIN_RULES, Rule

__all__ = ["ModifiedBackprop", "ActivationMethod", "RelevanceMethod"]


class ModifiedBackprop(AttributionMethod):
    """An attribution method defined by a composite of rules (see :mod:`toolkit_core.attribution`).

    Subclasses set ``multiply_input`` (``True``: the map is ``x * c(x)``, as for LRP; ``False``:
    the map is the modified gradient ``c(x)`` itself, as for GBP), implement :meth:`composite` (what
    this instance's composite adds to :attr:`base_composite`) and, optionally, :meth:`rule_params`
    (parameters handed to rules created by name) and :attr:`rule_kernels` (fused kernels for the
    rules' ``kernel_slots``). A third-party method may publish new rules and composites by name
    (``rules``, ``composites``); a name registered twice is an error naming both providers.
    """

    multiply_input: ClassVar[bool] = True
    rules: ClassVar[dict[str, type[Rule]]] = {}
    composites: ClassVar[dict[str, dict]] = {}
    #: what every composite of the method falls back to for the layers it does not mention
    base_composite: ClassVar[dict[Any, Any]] = {}
    #: kernels for the rules' ``kernel_slots`` (slot name -> a callable with the slot's signature)
    rule_kernels: ClassVar[Mapping[str, Callable[..., Tensor]]] = {}
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

    def full_composite(self) -> dict[Any, Any]:
        """:attr:`base_composite`, then :meth:`composite`, then the user's :meth:`overrides`."""
        return {**self.base_composite, **self.composite(), **self.overrides()}

    def rule_params(self) -> dict[str, Any]:
        return {}

    def resolver(self, model: nn.Module) -> CompositeResolver:
        return CompositeResolver(self.full_composite(), model, self.rule_params(),
                                 {**BUILTIN_RULES, **type(self).rules}, kernels=type(self).rule_kernels)

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
    subclasses name their rule in :attr:`activation` (a rule of :mod:`.rules`, parameters from
    :meth:`rule_params`); conv, dense and BatchNorm layers take the gradient.

    Activations are ReLU-like (``1[x > 0]``) or gates ``x * s(x)`` (GELU, SiLU, Hardswish, Mish) whose
    ``s`` the rule uses in place of the ReLU mask. Products of two input-dependent tensors other than
    gates have no rule here (``bilinear = "refuse"``).
    """

    multiply_input = False
    bilinear = "refuse"
    base_composite = {"conv": "gradient", "linear": "gradient", "bn": "gradient"}
    #: the rule at every activation, by name
    activation: ClassVar[str] = ""

    def composite(self):
        return {"activation": self.activation}


class RelevanceMethod(ModifiedBackprop):
    """A relevance-propagation method (LRP, DTD): the map is ``x * c(x)``; activations pass relevance
    (gates and attention weights held constant) and a BatchNorm that could not be folded into the layer
    before it takes LRP-epsilon. Subclasses give the rules of conv and dense layers in :meth:`composite`."""

    multiply_input = True
    base_composite = {"bn": "lrp_epsilon", "activation": "pass"}
