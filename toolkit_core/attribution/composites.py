"""Composites: plain data mapping layers to rules.

A composite is a ``dict``. Keys, from the most to the least specific:

* a module's qualified name (``"features.0"``, ``"layer1.0.conv2"``);
* a position: ``"first"`` (the first conv/dense layer in *execution* order, module or functional),
  ``"first_conv"``, ``"last"`` (the last conv/dense module to run; finding it costs one extra forward
  pass without autograd);
* a module class (``nn.Conv2d``) -- matched with ``isinstance``;
* a layer group: ``"conv"``, ``"linear"`` (alias ``"dense"``), ``"bn"``, ``"activation"``, ``"pool"``;
* ``"default"``: any other layer.

Values: a rule name (``"lrp_epsilon"``), a :class:`~.rules.Rule` object, ``(name, {params})``, or
``{"rule": name, **params}``. Named rules get the method's matching parameters (``epsilon``,
``gamma``, ...) unless the value gives its own. Example::

    my_composite = {"first": "lrp_flat", "conv": ("lrp_gamma", {"gamma": 0.5}), "linear": "lrp_epsilon"}
    toolkit_core.attribute(model, x, 3, method="lrp", composite=my_composite)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .layers import BN_TYPES, CONV_TYPES
from .rules import BUILTIN_RULES, Rule

__all__ = [
    "GROUPS", "PASS_THROUGH", "CompositeResolver", "DuplicateRuleError", "get_rule", "get_composite", "list_rules",
    "list_composites",
    "make_rule", "registered_rules", "registered_composites",
]

ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Tanh,
    nn.Sigmoid, nn.Hardsigmoid, nn.Hardswish, nn.Mish, nn.CELU, nn.SELU,
)
POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
#: layers whose plain gradient is the right signal for every method (no rule is ever needed)
PASS_THROUGH = (
    nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
GROUPS: dict[str, tuple[type, ...]] = {
    "conv": CONV_TYPES, "linear": (nn.Linear,), "dense": (nn.Linear,), "bn": BN_TYPES,
    "activation": ACTIVATIONS, "pool": POOLS,
}
POSITIONS = ("first", "first_conv", "last")


# --------------------------------------------------------------------------- rule and composite lookup


class DuplicateRuleError(KeyError):
    """Two providers register a rule (or composite) under the same name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


CORE = "toolkit_core"


def _merge(found: dict[str, tuple[Any, str]], name: str, value: Any, provider: str, what: str) -> None:
    if name in found and found[name][0] is not value:
        raise DuplicateRuleError(
            f"{what} {name!r} is registered by both {found[name][1]} and {provider}; a name has one provider: "
            f"rename one, or disable a plugin with TORCHTRUST_DISABLE_PLUGINS"
        )
    found.setdefault(name, (value, provider))


def registered_rules() -> dict[str, type[Rule]]:
    """Rules by name: the core's built-ins plus every registered attribution method's ``rules``. A
    name registered twice (by two plugins, or by a plugin and the core) raises
    :class:`DuplicateRuleError` naming both providers."""
    found: dict[str, tuple[Any, str]] = {n: (c, CORE) for n, c in BUILTIN_RULES.items()}
    for cls, provider in _method_classes():
        for name, rule in (getattr(cls, "rules", {}) or {}).items():
            _merge(found, name, rule, provider, "rule")
    return {n: v for n, (v, _) in found.items()}


def registered_composites() -> dict[str, dict]:
    """Composites by name from every registered attribution method's ``composites`` (duplicates
    raise :class:`DuplicateRuleError`)."""
    found: dict[str, tuple[Any, str]] = {}
    for cls, provider in _method_classes():
        for name, comp in (getattr(cls, "composites", {}) or {}).items():
            _merge(found, name, comp, provider, "composite")
    return {n: v for n, (v, _) in found.items()}


def _method_classes() -> list[tuple[type, str]]:
    """``(class, provider)`` of every registered attribution method (deduplicated by class)."""
    try:
        from ..catalog import get_info, list_methods

        infos = [get_info(n) for n in list_methods("attribution")]
    except Exception:  # no registry available: built-ins only
        return []
    seen, out = set(), []
    for info in infos:
        if info.cls not in seen:
            seen.add(info.cls)
            out.append((info.cls, info.provider or info.cls.__module__))
    return out


def list_rules() -> list[str]:
    return sorted(registered_rules())


def list_composites() -> list[str]:
    return sorted(registered_composites())


def get_rule(name: str, **params: Any) -> Rule:
    """Create the rule ``name`` (e.g. ``get_rule("lrp_gamma", gamma=0.5)``)."""
    return make_rule(name, params, registered_rules())


def get_composite(name: str) -> dict:
    """The composite ``name`` (a plain dict), e.g. ``get_composite("epsilon_plus_flat")``."""
    found = registered_composites()
    if name not in found:
        raise KeyError(f"no composite named {name!r}; registered: {', '.join(sorted(found)) or 'none'}")
    return dict(found[name])


def make_rule(value: Any, params: Mapping[str, Any], rules: Mapping[str, type[Rule]],
              kernels: Mapping[str, Callable] | None = None) -> Rule:
    """Turn a composite value into a :class:`Rule`; ``params`` fill matching constructor arguments and
    ``kernels`` the rule's kernel slots (:meth:`Rule.with_kernels`; a Rule object is used as given)."""
    if isinstance(value, Rule):
        return value
    own: dict[str, Any] = {}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
        value, own = value[0], dict(value[1])
    elif isinstance(value, Mapping):
        own = dict(value)
        value = own.pop("rule", None)
    if isinstance(value, type) and issubclass(value, Rule):
        cls = value
    elif isinstance(value, str):
        if value not in rules:
            rules = {**registered_rules(), **rules}
        if value not in rules:
            raise KeyError(f"no rule named {value!r}; known rules: {', '.join(sorted(rules))}")
        cls = rules[value]
    else:
        raise TypeError(
            f"a composite value must be a rule name, a Rule object, (name, params) or {{'rule': name, ...}}; "
            f"got {value!r}"
        )
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(own) - accepted
    if unknown:
        raise TypeError(f"rule {cls.name} got unknown parameters {sorted(unknown)}; it accepts {sorted(accepted)}")
    kwargs = {k: v for k, v in params.items() if k in accepted and v is not None}
    kwargs.update(own)
    rule = cls(**kwargs)
    return rule.with_kernels(kernels) if kernels else rule


# --------------------------------------------------------------------------- resolution


class CompositeResolver:
    """Pick the rule of each module of one model from a composite (see the module docstring)."""

    def __init__(
        self, composite: Mapping[Any, Any], model: nn.Module, params: Mapping[str, Any] | None = None,
        rules: Mapping[str, type[Rule]] | None = None, kernels: Mapping[str, Callable] | None = None,
    ):
        if not isinstance(composite, Mapping):
            raise TypeError(f"a composite must be a dict mapping layers to rules, got {type(composite).__name__}")
        self.composite = dict(composite)
        self.params = dict(params or {})
        self.rules = dict(rules) if rules is not None else registered_rules()
        self.kernels = dict(kernels or {})
        for key in self.composite:
            if isinstance(key, str) and key not in GROUPS and key not in POSITIONS and key != "default":
                names = dict(model.named_modules())
                if key not in names and "#" not in key:
                    raise KeyError(
                        f"composite key {key!r} is neither a layer name of the model, a position "
                        f"({', '.join(POSITIONS)}), a group ({', '.join(GROUPS)}) nor 'default'"
                    )
        #: the position keys the composite uses (the engine then tells each call its positions)
        self.positions = frozenset(k for k in self.composite if k in POSITIONS)
        self._cache: dict[Any, Rule | None] = {}

    def lookup(self, name: str, module: nn.Module, positions: frozenset = frozenset()) -> Any:
        """The composite value for this module, or ``None`` when no key matches. ``positions``: the
        positions (``first``, ``first_conv``, ``last``) of this call in execution order."""
        c = self.composite
        if name in c:
            return c[name]
        for pos in POSITIONS:
            if pos in c and pos in positions:
                return c[pos]
        for key, value in c.items():
            if isinstance(key, type) and isinstance(module, key):
                return value
        for group, types in GROUPS.items():
            if group in c and isinstance(module, types):
                return c[group]
        return c.get("default")

    def rule_for(self, name: str, module: nn.Module, positions: frozenset = frozenset()) -> Rule | None:
        value = self.lookup(name, module, positions)
        if value is None:
            return None
        key = value if isinstance(value, str) else id(value)
        if key not in self._cache:
            self._cache[key] = make_rule(value, self.params, self.rules, self.kernels)
        return self._cache[key]


RuleFor = Callable[[str, nn.Module], "Rule | None"]
