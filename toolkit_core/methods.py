"""What a method is: :class:`MethodInfo` and one base class per kind.

A method is a class. Its identity is in class attributes (``name``, ``summary``, ``citation``,
``kernels``); its parameters are the keyword arguments of ``__init__``, whose type hints and defaults
are introspected into :class:`ParameterInfo` and checked by :func:`validate_params` before the class is
instantiated. Plugins register method classes through the hooks in :mod:`toolkit_core.hookspecs`.

This module does not import torch, so that the CLI can describe methods cheaply.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Union

from .errors import ParameterError, PluginRegistrationError
from .kinds import KINDS

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_MISSING = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class ParameterInfo:
    """One constructor parameter of a method."""

    name: str
    type: str  # readable rendering of the type hint, e.g. "float" or "Literal['linf', 'l2']"
    default: Any = None
    required: bool = False
    annotation: Any = dataclasses.field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        default = self.default
        if not isinstance(default, (int, float, str, bool, type(None), list, tuple, dict)):
            default = repr(default)
        return {"name": self.name, "type": self.type, "default": default, "required": self.required}


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """Everything the catalog knows about a method, without creating it."""

    name: str
    kind: str
    summary: str
    citation: str
    parameters: tuple[ParameterInfo, ...] = ()
    kernels: tuple[str, ...] = ()
    provider: str = "<unregistered>"  # distribution name
    version: str = ""  # distribution version
    plugin: str = ""  # entry-point name
    cls: type | None = dataclasses.field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "summary": self.summary,
            "citation": self.citation,
            "parameters": [p.to_dict() for p in self.parameters],
            "kernels": list(self.kernels),
            "provider": self.provider,
            "version": self.version,
            "plugin": self.plugin,
        }

    def parameter(self, name: str) -> ParameterInfo:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)


# --------------------------------------------------------------------------- introspection


def _type_name(hint: Any) -> str:
    if hint is _MISSING or hint is Any:
        return "any"
    if isinstance(hint, str):
        return hint
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in typing.get_args(hint)) + "]"
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = typing.get_args(hint)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(_type_name(a) for a in args)}]" if args else base
    if hint is type(None):
        return "None"
    if hint is Ellipsis:
        return "..."
    return getattr(hint, "__name__", str(hint))


def introspect_parameters(cls: type) -> tuple[ParameterInfo, ...]:
    """Read the keyword parameters of ``cls.__init__`` with their type hints and defaults."""
    init = cls.__init__
    if init is object.__init__:
        return ()
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolved forward references: keep the raw annotations
        hints = dict(getattr(init, "__annotations__", {}))
    params = []
    for p in list(inspect.signature(init).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(p.name, _MISSING)
        params.append(
            ParameterInfo(
                name=p.name,
                type=_type_name(hint),
                default=None if p.default is _MISSING else p.default,
                required=p.default is _MISSING,
                annotation=hint,
            )
        )
    return tuple(params)


def describe(cls: type, provider: str = "<unregistered>", version: str = "", plugin: str = "") -> MethodInfo:
    """Build the :class:`MethodInfo` of a method class, checking that the class is well formed."""
    if not isinstance(cls, type) or not issubclass(cls, Method):
        raise PluginRegistrationError(
            f"register() expects a subclass of toolkit_core.methods.Method, got {cls!r}"
        )
    kind = getattr(cls, "kind", None)
    if kind not in BASES:
        raise PluginRegistrationError(
            f"{cls.__qualname__} must subclass one of the kind base classes "
            f"({', '.join(b.__name__ for b in BASES.values())})"
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise PluginRegistrationError(
            f"{cls.__qualname__}.name must be a lowercase identifier like 'my_method', got {name!r}"
        )
    for attr in ("summary", "citation"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr).strip():
            raise PluginRegistrationError(f"{cls.__qualname__}.{attr} must be a non-empty string")
    return MethodInfo(
        name=name,
        kind=kind,
        summary=cls.summary.strip().splitlines()[0],
        citation=cls.citation,
        parameters=introspect_parameters(cls),
        kernels=tuple(getattr(cls, "kernels", ())),
        provider=provider,
        version=version,
        plugin=plugin,
        cls=cls,
    )


# --------------------------------------------------------------------------- validation


def _matches(value: Any, hint: Any) -> bool:
    if hint is _MISSING or hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return True
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list, Sequence, typing.Sequence):
        if not isinstance(value, (tuple, list)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return len(args) != 1 or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping, typing.Mapping):
        return isinstance(value, Mapping)
    if origin in (Callable, typing.Callable) or hint is Callable:
        return callable(value)
    if origin is not None:
        return isinstance(value, origin) if isinstance(origin, type) else True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe_params(info: MethodInfo) -> str:
    if not info.parameters:
        return "it takes no parameters"
    parts = []
    for p in info.parameters:
        parts.append(f"{p.name}: {p.type}" + (" (required)" if p.required else f" = {p.default!r}"))
    return "valid parameters: " + ", ".join(parts)


def validate_params(info: MethodInfo, params: Mapping[str, Any]) -> None:
    """Raise :class:`ParameterError` for an unknown, missing or ill-typed parameter."""
    known = {p.name: p for p in info.parameters}
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ParameterError(
                f"{info.name} got an unknown parameter '{key}'{hint}; {_describe_params(info)}"
            )
    for p in info.parameters:
        if p.required and p.name not in params:
            raise ParameterError(f"{info.name} needs the parameter '{p.name}'; {_describe_params(info)}")
        if p.name in params and not _matches(params[p.name], p.annotation):
            raise ParameterError(
                f"{info.name}: parameter '{p.name}' must be {p.type}, got {params[p.name]!r} "
                f"({type(params[p.name]).__name__}); {_describe_params(info)}"
            )


# --------------------------------------------------------------------------- experiments


@dataclasses.dataclass(frozen=True)
class Scale:
    """What a method class is told about the experiment it joins (:meth:`Method.experiment_variants`).

    ``eps``: the L-inf radius of the data set's threat model, inputs in ``[0, 1]`` (the default
    experiment's digits: 0.1; CIFAR-10 is usually 8/255). ``quick``: a smaller, faster run
    (``torchtrust run --quick``), where a method should pick cheaper settings or leave itself out.
    """

    eps: float = 8 / 255
    quick: bool = False


# --------------------------------------------------------------------------- base classes


class Method:
    """Base of every method. Subclass one of the kind classes below, never this one directly."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    kernels: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def contract_params(cls) -> dict[str, Any]:
        """Parameters the contract checks (:mod:`toolkit_core.testing`) create the method with.

        Override when a parameter is required or the defaults are too slow for a smoke test.
        """
        return {}

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """The parameter sets an experiment runs this method with when its config names no parameters.

        The first is the method's main setting; more are shown beside it (e.g. other rules); an empty
        list leaves the method out of a run at this ``scale`` (e.g. an expensive one in quick mode).
        The default experiment asks every installed method's class, so a third-party method joins with
        the settings it chooses here. Default: one run with the constructor's defaults.
        """
        return [{}]

    @classmethod
    def experiment_claims(cls, stage: str, result: dict[str, Any], labels: list[str]) -> list[Any]:
        """What the method's paper claims, checked against one stage's result of an experiment.

        ``result``: the stage's aggregated numbers (means, with the seed spread under ``over_seeds``);
        ``labels``: this method's labels in the run (its variants). Return
        :class:`toolkit_core.experiment.anchors.Claim` objects, one per claim, each with a verdict
        computed from the numbers (``reproduced``, ``not reproduced``, or ``not comparable`` when the
        run lacks what the claim is about); the helpers ``ordered`` and ``above_reference`` of that
        module compute the usual ones. The report shows them beside the stage. Default: none.
        """
        return []

    #: Attributes that make up the method's mutable state (e.g. a schedule's current value, fitted codes,
    #: a random generator): :meth:`state_dict` saves them and :meth:`load_state_dict` restores them, so
    #: checkpoints of ``fit`` and ``train_gan`` resume bit for bit. Objects with ``get_state``/``set_state``
    #: (``torch.Generator``) are saved by their state.
    state_attributes: ClassVar[tuple[str, ...]] = ()

    def state_dict(self) -> dict[str, Any]:
        """``{attribute: value}`` for every name in :attr:`state_attributes`."""
        out = {}
        for attr in self.state_attributes:
            value = getattr(self, attr)
            out[attr] = value.get_state() if hasattr(value, "get_state") and hasattr(value, "set_state") else value
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (a key left out keeps its value); an unknown key raises
        ``KeyError`` naming it."""
        unknown = sorted(set(state) - set(self.state_attributes))
        if unknown:
            raise KeyError(f"{self.name}: state has unknown keys {unknown}; expected {list(self.state_attributes)}")
        for attr in self.state_attributes:
            if attr not in state:
                continue
            current = getattr(self, attr, None)
            if hasattr(current, "get_state") and hasattr(current, "set_state"):
                current.set_state(state[attr])
            else:
                setattr(self, attr, state[attr])

    @classmethod
    def describe(cls) -> MethodInfo:
        """The class's :class:`MethodInfo` (provider unknown unless made through the registry)."""
        return describe(cls)

    @property
    def info(self) -> MethodInfo:
        return self.__dict__.get("_info") or type(self).describe()

    def __repr__(self) -> str:
        args = []
        for p in self.info.parameters:
            value = vars(self).get(p.name, p.default)  # instance state only: a method may share a name
            if p.required or value is not p.default:
                args.append(f"{p.name}={value!r}")
        return f"{type(self).__name__}({', '.join(args)})"


class AttributionMethod(Method):
    """An attribution method: ``attribute(model, x, target) -> Tensor`` of ``x``'s shape.

    Call the object (``method(model, x, target=None)``): the call validates ``x`` (a float tensor
    with a batch dimension, finite) and guarantees the model comes back unchanged. ``attribute``
    receives ``target`` as given (int, list, tensor, or ``None`` for the predicted class) and turns
    it into a ``(B,)`` long tensor with :func:`toolkit_core.attribution.resolve_target` after its
    forward pass.
    """

    kind: ClassVar[str] = "attribution"
    #: ``False`` for a method whose map is the plain input gradient, ``True`` for input x gradient,
    #: ``None`` (default) for any other: :func:`toolkit_core.attribution.layerwise` reproduces the first
    #: two layer by layer with the gradient rule at every layer.
    plain_gradient_times_input: ClassVar[bool | None] = None

    def attribute(self, model, x, target):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, model, x, target=None, *, batch_size: int | None = None):
        from .attribution import run_attribution

        return run_attribution(self, model, x, target, batch_size=batch_size)


class Attack(Method):
    """An adversarial attack: ``perturb(model, x, y) -> x_adv`` with ``x`` in ``[0, 1]``.

    Call the object (``attack(model, x, y)``): the call validates the inputs, runs ``perturb`` with
    the model in eval mode and its parameters frozen, and restores mode and flags afterwards.
    ``batch_size`` (a call argument): ``perturb`` runs on chunks of that many samples (``None``: sized
    to the device, :mod:`toolkit_core.chunking`), so a large batch never holds all activations at once.
    """

    kind: ClassVar[str] = "attack"
    #: False for score-based (black-box) attacks that only call the forward pass; robustness
    #: evaluation compares them with the gradient-based ones to detect gradient masking.
    uses_gradients: ClassVar[bool] = True
    #: True for an attack that runs other attacks and keeps the per-sample worst case (an ensemble such
    #: as AutoAttack): the robustness stage reports its accuracy on every model as the headline number.
    ensemble: ClassVar[bool] = False

    @classmethod
    def experiment_members(cls, scale: Scale) -> tuple[str, ...]:
        """Names of attacks this one already runs, and reports one by one, in an experiment at ``scale``;
        the default experiment then does not run them again as attacks of their own. Default: none."""
        return ()

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """Default: the attack's defaults with ``eps`` set to the data set's radius, if it takes one."""
        takes_eps = any(p.name == "eps" for p in introspect_parameters(cls))
        return [{"eps": scale.eps} if takes_eps else {}]

    @classmethod
    def training_params(cls, scale: Scale) -> dict[str, Any] | None:
        """Parameters for crafting examples inside adversarial training at ``scale``, or ``None`` when this
        attack is not meant for training (the default). An experiment trains its defenses with the
        attack its config names, else with the first installed attack, by name, that returns parameters here.
        """
        return None

    def perturb(self, model, x, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, model, x, y, *, batch_size: int | None = None):
        from .attacks import run_attack

        return run_attack(self, model, x, y, batch_size=batch_size)


class Defense(Method):
    """A training objective: ``loss(model, x, y) -> (loss, logs)`` for one batch.

    ``fit`` calls ``start_epoch(epoch, epochs)`` before each epoch (for schedules) and ``loss``
    for every batch with the model in train mode.
    """

    kind: ClassVar[str] = "defense"
    #: Whether the quick experiment (``Scale.quick``) trains this defense; defenses are its most
    #: expensive part, so by default it trains one (the first installed that opts in, else the first).
    in_quick_experiment: ClassVar[bool] = False

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """Default: one run with the defaults; in a quick run only if the class sets ``in_quick_experiment``."""
        return [{}] if cls.in_quick_experiment or not scale.quick else []

    def loss(self, model, x, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Hook for schedules; ``epoch`` counts from 0."""

    def end_epoch(self, epoch: int, epochs: int, metrics: Mapping[str, float], optimizer) -> Mapping[str, float] | None:
        """Hook after every epoch of ``fit``, for schedules that react to how training went.

        ``metrics`` is the epoch's history row so far (a copy): the training logs averaged over the
        epoch and over ranks (``loss``, ``clean_acc``, ``adv_acc``, ...) and, when ``fit`` was given
        ``eval_data``, the validation accuracies ``eval_clean_acc`` / ``eval_adv_acc``. ``optimizer`` is
        the ``torch.optim.Optimizer`` ``fit`` steps; the hook may change its ``param_groups[i]["lr"]``
        (e.g. an accuracy-driven learning-rate schedule); the optimizer's state, and so the new learning
        rate, is saved in ``fit``'s checkpoint. Every rank gets the same ``metrics``, so every rank takes
        the same decision. A returned mapping of floats is added to the history row (e.g. ``{"lr": ...}``).
        Runs after ``start_epoch`` and the epoch's batches, before the epoch's checkpoint, so state the
        defense keeps in :attr:`~Method.state_attributes` is saved with the epoch. Default: nothing.
        """
        return None


class Prior(Method):
    """A generative prior: ``fit(X)``, ``sample(n) -> (n, dim)``, ``codes`` and ``dim``.

    Implement ``fit_points(X, **kwargs)``: :meth:`fit` converts the training data once (a tensor, array,
    Dataset or DataLoader -> a finite float ``(N, D)`` CPU tensor with at least ``min_points`` rows,
    :func:`toolkit_core.generative.points.training_points`) and hands it over, so every prior gets the
    same checks and error messages.
    """

    kind: ClassVar[str] = "prior"
    #: Whether a GAN trained with this prior uses the pairing term (``train_gan(pair_weight=...)``):
    #: ``False`` for an unstructured baseline prior whose codes carry no information about the data,
    #: which is then trained as a plain GAN.
    pairing: ClassVar[bool] = True
    #: The fewest training points :meth:`fit` accepts.
    min_points: ClassVar[int] = 1
    dim: int
    codes: Any = None

    def fit(self, X, **kwargs):
        """Fit on training points ``X`` (converted once, see the class docstring); returns ``self``."""
        from .generative.points import training_points

        self.fit_points(training_points(X, self.min_points), **kwargs)
        return self

    def fit_points(self, X, **kwargs) -> None:  # pragma: no cover - abstract
        """Fit on ``X``, a checked float ``(N, D)`` tensor; set ``codes`` (one row per point)."""
        raise NotImplementedError

    def sample(self, n: int):  # pragma: no cover - abstract
        raise NotImplementedError


class Metric(Method):
    """A model metric: ``compute(model, data) -> dict[str, float]``.

    ``higher_is_better`` maps every key that ``compute`` returns to the better direction;
    ``definitions`` gives each of those keys a one-line definition (what the number is, in words and
    symbols), shown on hover and in the glossary of an experiment's report. A breakdown key
    ``"key/part"`` shares the definition of ``"key"``.
    """

    kind: ClassVar[str] = "metric"
    higher_is_better: ClassVar[dict[str, bool]] = {}
    definitions: ClassVar[dict[str, str]] = {}
    #: What ``compute`` takes as ``model``: a ``"classifier"`` (inputs -> logits, the default) or a
    #: ``"generator"`` (latents -> samples). Experiments run each metric where it applies.
    applies_to: ClassVar[str] = "classifier"

    def compute(self, model, data) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, model, data) -> dict[str, float]:
        return self.compute(model, data)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every ``compute`` a subclass defines runs guarded: model and caller's tensors come back unchanged."""
        super().__init_subclass__(**kwargs)
        _guard_methods(cls, ("compute",))


def _guard_methods(cls: type, names: tuple[str, ...]) -> None:
    """Wrap the methods ``names`` that ``cls`` itself defines with :func:`_guarded_compute` (once)."""
    for name in names:
        fn = cls.__dict__.get(name)
        if fn is not None and not getattr(fn, "_torchtrust_guarded", False):
            setattr(cls, name, _guarded_compute(fn))


def _guarded_compute(fn: Callable) -> Callable:
    import functools

    @functools.wraps(fn)
    def compute(self, model, data=None, *args: Any, **kwargs: Any):
        from .modelstate import guarded

        try:
            import torch
        except ImportError:  # pragma: no cover
            return fn(self, model, data, *args, **kwargs)
        if not isinstance(model, torch.nn.Module):
            return fn(self, model, data, *args, **kwargs)
        inputs = tuple(t for t in (data if isinstance(data, (tuple, list)) else (data,)) if isinstance(t, torch.Tensor))
        with guarded(model, inputs, single_output=getattr(self, "applies_to", "classifier") == "classifier"):
            return fn(self, model, data, *args, **kwargs)

    compute._torchtrust_guarded = True  # type: ignore[attr-defined]
    return compute



class DataSource(Method):
    """A data set: ``loaders(batch_size, seed) -> (train, test)`` DataLoaders of ``(x, y)`` batches.

    An instance sets ``input_shape`` (one sample), ``num_classes`` and ``value_range`` (``(low, high)``
    bounds of every input) in ``__init__``, since they may depend on its parameters. ``x`` batches have
    shape ``(B, *input_shape)`` and lie in ``value_range``; ``y`` holds class indices. Same seed, same data.
    """

    kind: ClassVar[str] = "dataset"
    input_shape: tuple[int, ...]
    num_classes: int
    value_range: tuple[float, float]

    def loaders(self, batch_size: int = 256, seed: int = 0):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def experiment_training(cls, scale: Scale) -> dict[str, Any]:
        """How the experiment's ``datasets`` stage trains a model on this data (the budget): ``epochs``,
        ``lr``, ``optimizer`` (``"adam"``/``"sgd"``) and ``batch_size``. Default: Adam 3e-3, batch 64,
        10 epochs (3 in a quick run). The parameter sets come from :meth:`experiment_variants` as usual."""
        return {"epochs": 3 if scale.quick else 10, "lr": 3e-3, "optimizer": "adam", "batch_size": 64}

    def experiment_model(self):
        """A fresh model for this data in the ``datasets`` stage, or ``None`` (default): the stage picks one
        by ``input_shape`` (an MLP for flat inputs, the digits CNN for 1-channel square images)."""
        return None

    def reference(self) -> DataSource | None:
        """A data set to train the same model on for comparison (e.g. the clean data behind a poisoned
        one), reported beside this one; ``None`` (default): no comparison."""
        return None

    def diagnostics(self, model, x, y) -> dict[str, float]:
        """Numbers about ``model`` (trained on this data) beyond test accuracy, on test inputs ``x`` and
        labels ``y`` (e.g. a randomization test); shown in the ``datasets`` section. Default: none."""
        return {}


class Detector(Method):
    """A detector of abnormal (out-of-distribution or adversarial) inputs.

    ``fit(model, data) -> self`` learns from in-distribution training data; ``score(model, x)``
    returns a ``(B,)`` tensor, higher = more abnormal. Detectors are a kind of their own rather than
    metrics: they hold state fitted on training data and score single inputs, which an attack or a
    deployment pipeline consumes; a metric only reduces a model and a data set to numbers.
    """

    kind: ClassVar[str] = "detector"

    def fit(self, model, data):  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, model, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def detect(self, model, x, threshold: float):
        """Boolean ``(B,)``: ``score > threshold``."""
        return self.score(model, x) > threshold

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``fit`` and ``score`` run guarded: model and caller's tensors come back unchanged."""
        super().__init_subclass__(**kwargs)
        _guard_methods(cls, ("fit", "score"))


class Certifier(Method):
    """A certifier: ``predict(model, x)`` and ``certify(model, x) -> (prediction, radius)``.

    ``prediction`` holds class indices, ``-1`` where the certifier abstains; ``radius`` the certified
    radius in the norm ``norm`` (``0`` for abstentions). ``guard(model)`` is the context that hands
    the model back unchanged (eval mode, frozen parameters inside).
    """

    kind: ClassVar[str] = "certifier"
    #: the norm of the certified radius
    norm: ClassVar[str] = "l2"

    def guard(self, model):
        from .modelstate import preserved

        return preserved(model, mode=False, freeze=True)

    def predict(self, model, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def certify(self, model, x):  # pragma: no cover - abstract
        raise NotImplementedError


class WeightPatch(Method):
    """A weight patch: learned from a pair of models, added to a *copy* of another model.

    ``extract(source, reference) -> self`` learns the patch from two models of one architecture (e.g.
    a robust and a standard model); ``apply(model, coefficient) -> nn.Module`` returns a new model,
    ``theta' = theta + coefficient * delta`` on the parameters the patch holds (``self.delta``:
    parameter name -> tensor), every other parameter and buffer copied unchanged. ``model`` itself is
    never modified, so coefficient ``0`` gives a model bit-identical to it. Weight patches are a kind
    of their own: unlike a defense they train nothing (no per-batch loss), unlike a metric they return
    a model, not numbers; robustness patches, task vectors and weight interpolations share this shape.
    """

    kind: ClassVar[str] = "patch"
    delta: dict[str, Any]

    @classmethod
    def experiment_coefficients(cls, scale: Scale) -> list[float]:
        """The coefficients the experiment's ``patches`` stage applies the patch with (the budget: each one
        is a robustness evaluation). Default: 0, 0.5, 1, 1.5, 2 (quick: 0, 1, 2)."""
        return [0.0, 1.0, 2.0] if scale.quick else [0.0, 0.5, 1.0, 1.5, 2.0]

    def extract(self, source, reference):  # pragma: no cover - abstract
        """Learn ``self.delta`` from ``source`` and ``reference`` (same architecture); return ``self``."""
        raise NotImplementedError

    def apply(self, model, coefficient: float = 1.0):
        """A deep copy of ``model`` with ``coefficient * delta[name]`` added to each patched parameter."""
        import copy

        import torch

        delta = getattr(self, "delta", None)
        if delta is None:
            raise RuntimeError(f"{self.name}: call extract(source, reference) before apply(model, coefficient)")
        params = dict(model.named_parameters())
        missing = sorted(set(delta) - set(params))
        if missing:
            raise ValueError(f"{self.name}: the model has no parameter(s) {missing} that the patch holds; apply "
                             f"it to a model of the architecture it was extracted from")
        for name, d in delta.items():
            if tuple(params[name].shape) != tuple(d.shape):
                raise ValueError(f"{self.name}: parameter {name!r} has shape {tuple(params[name].shape)}, the "
                                 f"patch {tuple(d.shape)}; apply it to a model of the architecture it was "
                                 "extracted from")
        patched = copy.deepcopy(model)
        if coefficient == 0:
            return patched
        new_params = dict(patched.named_parameters())
        with torch.no_grad():
            for name, d in delta.items():
                p = new_params[name]
                p.add_(d.to(device=p.device, dtype=p.dtype), alpha=float(coefficient))
        return patched

    def sweep(self, model, data, coefficients, perturb=None) -> list[dict[str, float]]:
        """Per coefficient ``c``: ``{"coefficient": c, "clean_acc": ...}`` of ``apply(model, c)`` on
        ``data = (x, y)`` and, with ``perturb(patched, x, y) -> x'`` (an attack, or a corruption that ignores
        the model), ``"robust_acc"``: its accuracy on ``x'`` crafted against the patched model. ``model`` is
        not modified."""
        import torch

        from .training.adversarial import accuracy

        x, y = data
        rows = []
        for c in coefficients:
            patched = self.apply(model, float(c)).eval()
            x_adv = perturb(patched, x, y) if perturb is not None else None
            with torch.no_grad():
                row = {"coefficient": float(c), "clean_acc": accuracy(patched(x), y)}
                if x_adv is not None:
                    row["robust_acc"] = accuracy(patched(x_adv), y)
            rows.append(row)
        return rows


#: Kind name -> base class, derived from the table of kinds (:mod:`toolkit_core.kinds`).
BASES: dict[str, type[Method]] = {k.name: globals()[k.base] for k in KINDS}
