"""Experiment configuration: TOML in, validated plain data out, every error reported at once.

A config names methods by their registered names, with parameters as keys of the same table::

    seed = 0

    [data]                  # embedded data; nothing is downloaded
    size = 16               # digits upsampled to size x size
    train_size = 600        # optional subset of the training split

    [train]
    epochs = 4
    lr = 0.002

    [[defenses]]            # each trained model; "plain" (cross-entropy) is always trained too
    name = "aalp"
    attack = { name = "pgd", eps = 0.3, alpha = 0.05, steps = 5 }

    [[attacks]]             # evaluation attacks
    name = "pgd"
    eps = 0.3
    steps = 20

    [[attribution]]
    name = "lrp"
    composite = "epsilon_plus_flat"

    [analysis]
    randomization = true

    [[priors]]
    name = "mmc"

    [generative]
    mixtures = ["ring", "grid"]
    epochs = 30

    [[metrics]]
    name = "neural_collapse"

A section that is left out gets its default: every installed method of that kind (so third-party
plugins join automatically). An empty list (``attacks = []``) switches a stage off.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..errors import TorchtrustError
from ..generative.gan import PAIR_NOISE
from ..kinds import experiment_sections
from ..methods import Scale
from ..precision import check_precision

#: section -> method kind, from the table of kinds (:mod:`toolkit_core.kinds`)
METHOD_SECTIONS = experiment_sections()
SETTINGS_SECTIONS = ("data", "model", "train", "analysis", "generative", "generalization")
TOP_KEYS = ("seed", "seeds", "device", "precision", "stages")
#: The stages that run under the config's ``precision`` (autocast); attribution and the others run in float32.
PRECISION_STAGES = ("train", "robustness", "metrics")
STAGES = ("train", "robustness", "attribution", "generative", "metrics", "generalization", "datasets",
          "detectors", "patches")
#: What each stage needs from the others; asking for a stage pulls in what it needs (checked before any work).
STAGE_NEEDS: dict[str, tuple[str, ...]] = {"robustness": ("train",), "attribution": ("train",),
                                           "metrics": ("train",), "detectors": ("train",), "patches": ("train",)}
#: The method sections (:data:`METHOD_SECTIONS`) each stage runs; the report defines their methods in its section.
STAGE_METHODS: dict[str, tuple[str, ...]] = {
    "train": ("defenses",), "robustness": ("attacks", "certifiers"), "attribution": ("attribution",),
    "generative": ("priors",), "metrics": ("metrics",), "generalization": ("metrics",), "datasets": ("datasets",),
    "detectors": ("detectors",), "patches": ("patches",)}
#: Stages cheap enough to repeat over seeds (``seeds``, default 3; quick 1); the others run on the first seed.
SEEDED_STAGES = ("train", "robustness", "metrics")
DEFAULT_SEEDS = (3, 1)  # (full, quick)

#: Settings and their defaults (full, quick). Types are checked against the full default.
SETTINGS: dict[str, dict[str, tuple[Any, Any]]] = {
    # eps: the L-inf radius of the threat model on this data; every attack and the training attack take
    # their parameters for it from their own class (Attack.experiment_variants / training_params)
    "data": {"size": (16, 16), "train_size": (0, 0), "test_size": (0, 200), "batch_size": (32, 32),
             "eps": (0.1, 0.1)},
    "model": {"width": (16, 8), "hidden": (64, 32)},
    "train": {"epochs": (6, 3), "lr": (0.002, 0.003), "optimizer": ("adam", "adam"),
              "attack": ("", "")},  # the attack defenses train with ("": see training_attack_spec)
    "analysis": {"randomization": (True, True), "photos": (True, True), "photo_size": (224, 64),
                 "samples": (16, 8), "sufficiency": (True, True), "faithfulness": (True, True)},
    # 2000 points / batch 100 = 20 steps per epoch: full 5000 steps per GAN, quick 1500 (ring only)
    "generative": {"mixtures": (["ring", "grid"], ["ring"]), "epochs": (250, 75),
                   "samples": (2500, 2500), "seeds": (1, 1), "train_points": (2000, 2000), "batch_size": (100, 100),
                   "pair_weight": (1.0, 1.0), "noise_dim": (1, 1), "hidden": (128, 128), "lr": (0.001, 0.001),
                   # the last quarter of the epochs at lr / 10 (docs/results/priors.md, table b1)
                   "lr_drop": (True, True),
                   # the noise in MMCGAN's pairing term: "sampled" n ~ N(0, I) or "zero" (images: priors.md, c)
                   "pair_noise": ("sampled", "sampled")},
    # the Jiang et al. study of the metrics (stage generalization): its own MLPs on the 8x8 digits
    "generalization": {"factors": (["width", "depth", "lr", "weight_decay", "batch_size", "dropout", "train_size"],
                                   ["width", "lr", "train_size"]),
                       "bases": (2, 1), "target_ce": (0.02, 0.02), "max_steps": (4000, 1500),
                       "samples": (400, 200), "bootstrap": (500, 200)},
}
POSITIVE = "> 0"  # a lower bound that excludes zero
#: Allowed values of settings: (low, high) bounds (None: open), or a tuple of choices for strings and
#: list items. Checked with the types when the config is read, so nothing runs on a bad value.
LIMITS: dict[str, dict[str, Any]] = {
    "data": {"size": (4, 256), "train_size": (0, None), "test_size": (0, None), "batch_size": (1, None),
             "eps": (0, 1)},
    "model": {"width": (1, None), "hidden": (1, None)},
    "train": {"epochs": (1, None), "lr": (POSITIVE, None), "optimizer": ("adam", "sgd")},
    "analysis": {"photo_size": (32, 1024), "samples": (1, None)},
    "generative": {"mixtures": ("ring", "grid"), "epochs": (1, None), "samples": (1, None), "seeds": (1, None),
                   "train_points": (1, None), "batch_size": (1, None), "pair_weight": (0, None),
                   "noise_dim": (0, None), "hidden": (1, None), "lr": (POSITIVE, None),
                   "pair_noise": PAIR_NOISE},
    "generalization": {"factors": ("width", "depth", "lr", "weight_decay", "batch_size", "dropout", "train_size"),
                       "bases": (1, None), "target_ce": (POSITIVE, None), "max_steps": (1, None),
                       "samples": (10, None), "bootstrap": (10, None)},
}
#: Keys of [model] and [data] that describe a user's model and data (toolkit_core.workloads).
WORKLOAD_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("arch", "num_classes", "weights", "checkpoint", "mean", "std", "input_size", "small_input", "kwargs"),
    "data": ("dataset", "root", "download", "train_split", "test_split", "train_subset", "test_subset", "subset",
             "subset_seed", "num_workers", "resize", "crop", "channels"),
}


def workload_specs(settings: dict[str, dict[str, Any]]):
    """``(ModelSpec or None, DataSpec)`` of a config's [model] / [data], or ``None`` for the embedded digits."""
    from ..workloads import DataSpec, ModelSpec

    model = {k: v for k, v in settings.get("model", {}).items() if k in WORKLOAD_KEYS["model"]}
    data = {k: v for k, v in settings.get("data", {}).items() if k in WORKLOAD_KEYS["data"]}
    if not model and data.get("dataset", "digits") == "digits":
        return None
    data.setdefault("dataset", "digits")
    data["batch_size"] = settings.get("data", {}).get("batch_size", 128)
    return (ModelSpec(**model) if model else None), DataSpec(**data)


def workload_problems(settings: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(section, key, problem)`` for every problem in a user's [model] / [data]."""
    out: list[tuple[str, str, str]] = []
    try:
        specs = workload_specs(settings)
    except TypeError as exc:
        return [("model", "", f"[model]/[data]: {exc}")]
    if specs is None:
        return out
    model, data = specs
    if model is None and data.dataset != "digits":
        out.append(("model", "", f"data.dataset = {data.dataset!r} needs a [model] with arch = '...' "
                                 "(e.g. 'torchvision:resnet18')"))
    for section, spec in (("model", model), ("data", data)):
        for problem in (spec.check() if spec is not None else []):
            key = problem.split(" ", 1)[0].split(".", 1)[-1]
            out.append((section, key, problem))
    return out


@dataclasses.dataclass
class MethodSpec:
    """One method named in a config: its registered name, parameters and where it was written."""

    name: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    line: int | None = None
    attack: MethodSpec | None = None  # for defenses: the attack used in training
    key_lines: dict[str, int] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    alias: str | None = None  # ``label = "..."`` in the config, or set by :func:`assign_labels`

    def line_of(self, message: str) -> int | None:
        """The line of the first parameter a message names, else the line of the method's name."""
        for key in sorted(self.key_lines, key=lambda k: message.find(f"{k}")):
            if key != "name" and re.search(rf"\b{re.escape(key)}\b", message):
                return self.key_lines[key]
        return self.key_lines.get("name", self.line)

    @property
    def full_label(self) -> str:
        """The name with every parameter given, e.g. ``pgd(eps=0.1,steps=20)``."""
        if not self.params and self.attack is None:
            return self.name
        short = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({short})" if short else self.name

    @property
    def label(self) -> str:
        """What reports show: the alias, else the full label (configs shorten it with :func:`assign_labels`)."""
        return self.alias or self.full_label

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "label": self.label, "params": self.params}
        if self.full_label != self.label:
            d["full_label"] = self.full_label
        if self.attack is not None:
            d["attack"] = self.attack.to_dict()
        return d


@dataclasses.dataclass
class ExperimentConfig:
    seed: int = 0
    device: str = "cpu"
    #: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA): autocast in :data:`PRECISION_STAGES` (toolkit_core.precision)
    precision: str = "fp32"
    quick: bool = False
    stages: tuple[str, ...] = STAGES
    seeds: int = 1  # the seeded stages run for seed, seed + 1, ..., seed + seeds - 1
    pulled_in: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # stage -> the stages needing it
    settings: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    methods: dict[str, list[MethodSpec]] = dataclasses.field(default_factory=dict)
    source: str = "<default>"
    #: Installed methods a defaulted section left out because they cannot be created: label -> why.
    left_out: dict[str, str] = dataclasses.field(default_factory=dict)

    def get(self, section: str, key: str) -> Any:
        return self.settings[section][key]

    @property
    def workload(self):
        """``(ModelSpec or None, DataSpec)`` when [model]/[data] name a user's model and data, else ``None``."""
        return workload_specs(self.settings)

    def names(self) -> dict[str, str]:
        """The model and the data of the run, as the report names them."""
        workload = self.workload
        if workload is None:
            size = self.settings.get("data", {}).get("size", 16)
            return {"model": "digits CNN", "data": f"scikit-learn digits ({size}x{size})"}
        return {"model": workload[0].label if workload[0] is not None else "digits CNN", "data": workload[1].label}

    def to_dict(self) -> dict[str, Any]:
        # precision only when it is not float32: the fingerprints of float32 runs stay what they were
        extra = {} if self.precision == "fp32" else {"precision": self.precision}
        return {"seed": self.seed, "seeds": self.seeds, "device": self.device, **extra, "quick": self.quick,
                "stages": list(self.stages), "pulled_in": self.pulled_in, "workload": self.names(),
                "settings": self.settings,
                "methods": {k: [m.to_dict() for m in v] for k, v in self.methods.items()}}

    def precision_note(self) -> str | None:
        """What the console and the report say when a lower precision is asked for (``None`` at float32)."""
        if self.precision == "fp32":
            return None
        return (f"precision {self.precision} applies to {', '.join(PRECISION_STAGES)}; attribution runs in float32 "
                "(its rules divide by pre-activations)")

    def fingerprint(self, stage: str | None = None) -> str:
        """A hash of what determines the results (of one stage, or of all)."""
        d = self.to_dict()
        if stage is not None:
            # every stage: attribution runs in float32 but on the models trained at this precision
            extra = {"precision": self.precision} if self.precision != "fp32" else {}
            d = {"seed": d["seed"], "device": d["device"], **extra, "settings": d["settings"],
                 "methods": d["methods"], "stage": stage}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ConfigError(TorchtrustError, ValueError):
    """Every problem found in a config, each with the line it comes from."""

    def __init__(self, problems: list[tuple[int | None, str]], source: str):
        self.problems = problems
        lines = [f"{source}:{line}: {msg}" if line else f"{source}: {msg}" for line, msg in problems]
        super().__init__(f"{len(problems)} problem(s) in the experiment config; nothing was run:\n" + "\n".join(lines))


# --------------------------------------------------------------------------- locating lines


class _Lines:
    """Finds the line of a table, an array-of-tables entry, or a key inside either."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str):
        self.keys: dict[tuple[str, int, str], int] = {}
        self.tables: dict[tuple[str, int], int] = {}
        counters: dict[str, int] = {}
        current: tuple[str, int] = ("", 0)
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0] if '"' not in raw else raw
            m = self._HEADER.match(line)
            if m:
                name = m.group(2)
                idx = counters.get(name, -1) + 1 if m.group(1) == "[[" else 0
                counters[name] = idx
                current = (name, idx)
                self.tables.setdefault(current, n)
                continue
            k = self._KEY.match(line)
            if k:
                self.keys.setdefault((current[0], current[1], k.group(1)), n)

    def of(self, section: str, index: int = 0, key: str | None = None) -> int | None:
        if key is not None and (section, index, key) in self.keys:
            return self.keys[(section, index, key)]
        return self.tables.get((section, index)) or self.keys.get(("", 0, section))


# --------------------------------------------------------------------------- building


def _installed(kind: str) -> list[str]:
    from ..catalog import list_methods

    return list_methods(kind)


def scale_of(settings: dict[str, dict[str, Any]], quick: bool) -> Scale:
    """What the method classes are told about this experiment (see :meth:`Method.experiment_variants`)."""
    return Scale(eps=float(settings["data"]["eps"]), quick=quick)


def default_methods(kind: str, scale: Scale) -> list[MethodSpec]:
    """Every installed method of ``kind``, with the parameter sets its class gives for ``scale``."""
    from ..catalog import get_info

    names = _installed(kind)
    classes = {name: get_info(name).cls for name in names}
    covered = {m for cls in classes.values() if kind == "attack" for m in cls.experiment_members(scale)}
    specs = []
    for name, cls in classes.items():
        if name not in covered:
            specs += [MethodSpec(name, params) for params in cls.experiment_variants(scale)]
    if not specs and kind == "defense":  # quick, and no defense opted in: train the first one that trains at all
        full = Scale(eps=scale.eps, quick=False)
        specs = [MethodSpec(name) for name, cls in classes.items() if cls.experiment_variants(full)][:1]
    return specs


def training_attack_spec(settings: dict[str, dict[str, Any]], quick: bool) -> MethodSpec | None:
    """The attack defenses are trained with when their config names none: ``[train] attack`` if set,
    else the first installed attack (by name) whose class gives training parameters; its parameters
    come from its class (:meth:`Attack.training_params`) for the experiment's scale. ``None`` if no
    installed attack is meant for training."""
    from ..catalog import get_info

    scale = scale_of(settings, quick)
    wanted = settings["train"]["attack"]
    for name in [wanted] if wanted else _installed("attack"):
        params = get_info(name).cls.training_params(scale)
        if params is not None or wanted:
            return MethodSpec(name, dict(params or {}))
    return None


def _settings(raw: dict[str, Any], quick: bool, lines: _Lines, problems: list) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, spec in SETTINGS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            problems.append((lines.of(section), f"[{section}] must be a table"))
            given = {}
        values = {k: copy.deepcopy(v[1] if quick else v[0]) for k, v in spec.items()}
        for key, value in given.items():
            if key in WORKLOAD_KEYS.get(section, ()):
                values[key] = value  # a user's model or data: checked by toolkit_core.workloads below
                continue
            if key not in spec:
                problems.append((lines.of(section, 0, key),
                                 f"unknown setting {section}.{key}; valid: {', '.join(spec)}"))
                continue
            expected = type(spec[key][0])
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if isinstance(value, bool) and expected is not bool:
                ok = False
            if not ok:
                problems.append((lines.of(section, 0, key),
                                 f"{section}.{key} must be {expected.__name__}, got {value!r}"))
                continue
            problem = _out_of_limits(section, key, value)
            if problem:
                problems.append((lines.of(section, 0, key), problem))
                continue
            values[key] = value
        out[section] = values
    return out


def _out_of_limits(section: str, key: str, value: Any) -> str | None:
    """A message when ``value`` is outside :data:`LIMITS` (``None`` when allowed)."""
    limit = LIMITS.get(section, {}).get(key)
    if limit is None:
        return None
    if isinstance(limit[0], str) and limit[0] != POSITIVE:  # choices, for a string or every item of a list
        items = value if isinstance(value, list) else [value]
        bad = [v for v in items if v not in limit]
        if bad:
            choices = ", ".join(repr(c) for c in limit)
            return f"{section}.{key}: {', '.join(repr(b) for b in bad)} is not allowed; choose from {choices}"
        return None
    low, high = limit
    too_low = (not value > 0) if low == POSITIVE else (low is not None and value < low)
    if too_low or (high is not None and value > high):
        lower = "> 0" if low == POSITIVE else f">= {low}"
        bounds = lower if high is None else f"{lower} and <= {high}"
        return f"{section}.{key} must be {bounds}, got {value!r}"
    return None


def _method_spec(entry: Any, section: str, index: int, lines: _Lines, problems: list) -> MethodSpec | None:
    where = lines.of(section, index)
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        problems.append((where, f"each [[{section}]] entry needs name = \"...\" (a registered method name)"))
        return None
    params = {k: v for k, v in entry.items() if k not in ("name", "attack", "label")}
    key_lines = {k: line for k in entry if (line := lines.of(section, index, k)) is not None}
    alias = entry.get("label")
    if alias is not None and (not isinstance(alias, str) or not alias.strip()):
        problems.append((lines.of(section, index, "label"), f"label must be a non-empty string, got {alias!r}"))
        alias = None
    spec = MethodSpec(entry["name"], params, where, key_lines=key_lines, alias=alias)
    if "attack" in entry:
        if section != "defenses":
            problems.append((lines.of(section, index, "attack"), "only defenses take an attack table"))
        else:
            a = entry["attack"]
            a = {"name": a} if isinstance(a, str) else a
            if not isinstance(a, dict) or not isinstance(a.get("name"), str):
                problems.append((lines.of(section, index, "attack"),
                                 'attack must be a table like { name = "NAME", eps = 0.3 } naming an installed attack'))
            else:
                at = lines.of(section, index, "attack")
                spec.attack = MethodSpec(a["name"], {k: v for k, v in a.items() if k != "name"}, at,
                                         key_lines={"name": at} if at else {})
    return spec


def build_config(raw: dict[str, Any], *, quick: bool = False, text: str = "", source: str = "<dict>",
                 device: str | None = None, seed: int | None = None,
                 precision: str | None = None) -> ExperimentConfig:
    """Validate ``raw`` (parsed TOML) against the installed methods; raise :class:`ConfigError`."""
    lines = _Lines(text)
    problems: list[tuple[int | None, str]] = []
    for key in raw:
        if key not in (*TOP_KEYS, *SETTINGS_SECTIONS, *METHOD_SECTIONS):
            valid = ", ".join((*TOP_KEYS, *SETTINGS_SECTIONS, *METHOD_SECTIONS))
            problems.append((lines.of(key), f"unknown section or key '{key}'; valid: {valid}"))
    cfg = ExperimentConfig(quick=quick, source=source)
    cfg.seed = raw.get("seed", 0) if seed is None else seed
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        problems.append((lines.of("seed"), f"seed must be an integer, got {cfg.seed!r}"))
        cfg.seed = 0
    cfg.device = device or raw.get("device", "cpu")
    if not isinstance(cfg.device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", cfg.device):
        problems.append((lines.of("device"), f"device must be 'cpu', 'cuda' or 'cuda:N', got {cfg.device!r}"))
    requested = precision or raw.get("precision", "fp32")
    try:
        cfg.precision = check_precision(requested, cfg.device if isinstance(cfg.device, str) and
                                        re.fullmatch(r"cpu|cuda(:\d+)?", cfg.device) else "cpu")
    except ValueError as exc:
        problems.append((None if precision else lines.of("precision"), str(exc)))
    stages = raw.get("stages", list(STAGES))
    bad = [s for s in stages if s not in STAGES] if isinstance(stages, list) else [stages]
    if bad:
        problems.append((lines.of("stages"), f"unknown stage(s) {bad}; valid: {', '.join(STAGES)}"))
    cfg.settings = _settings(raw, quick, lines, problems)
    for section, line_key, problem in workload_problems(cfg.settings):
        problems.append((lines.of(section, 0, line_key), problem))
    workload = cfg.workload if not any(p[1].startswith(("model.", "data.", "[model]")) for p in problems) else None
    # the bundled data repeats the cheap stages over seeds; a user's model and data run once unless asked
    seeds = raw.get("seeds", DEFAULT_SEEDS[1] if quick or workload is not None else DEFAULT_SEEDS[0])
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        problems.append((lines.of("seeds"), f"seeds must be a positive integer (how many seeds the "
                                            f"{', '.join(SEEDED_STAGES)} stages run), got {seeds!r}"))
    else:
        cfg.seeds = seeds
    if not bad:  # a given [model] (checkpoint) stands in for the trained one: train is then optional
        cfg.stages, cfg.pulled_in = resolve_stages(stages, model_given=workload is not None and workload[0] is not None)
    for section, kind in METHOD_SECTIONS.items():
        if section not in raw:
            cfg.methods[section] = default_methods(kind, scale_of(cfg.settings, quick))
            if kind == "attack" and workload is not None:  # budgets suited to the user's data
                for spec in cfg.methods[section]:
                    spec.params.pop("eps", None)
                    spec.params.pop("alpha", None)
            continue
        entries = raw[section]
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list):
            problems.append((lines.of(section), f"{section} must be a list of [[{section}]] tables"))
            continue
        specs = [_method_spec(e, section, i, lines, problems) for i, e in enumerate(entries)]
        cfg.methods[section] = [s for s in specs if s is not None]
    if workload is not None:  # eps (and alpha) left out: the budget suited to the user's data
        from ..workloads.defaults import attack_params

        for spec in cfg.methods.get("attacks", []):
            try:
                suited = attack_params(spec.name, workload[1].dataset)
            except Exception:  # noqa: BLE001 - an unknown name is reported by the check below
                continue
            if "eps" in spec.params and "alpha" in suited:
                suited["alpha"] = spec.params["eps"] / 4
            for key, value in suited.items():
                spec.params.setdefault(key, value)
    _give_defenses_the_training_attack(cfg, lines, problems)
    for section, kind in METHOD_SECTIONS.items():
        kept = []
        for spec in cfg.methods.get(section, []):
            if section not in raw:  # a default: a method that cannot be created is left out, with a warning
                own: list = []
                if _check_method(spec, kind, own):
                    kept.append(spec)
                else:
                    cfg.left_out[spec.label] = own[0][1]
                continue
            kept.append(spec)
            if spec.attack is not None and not _check_method(spec.attack, "attack", problems):
                _check_method(dataclasses.replace(spec, attack=None), kind, problems, created=False)
            else:
                _check_method(spec, kind, problems)
        if section in cfg.methods:
            cfg.methods[section] = kept
    if cfg.left_out:
        import warnings

        warnings.warn("left out of the default experiment (they cannot be created with their defaults; "
                      "`torchtrust doctor` shows them): " + "; ".join(cfg.left_out.values()), UserWarning,
                      stacklevel=3)
    for section, specs in cfg.methods.items():
        index = {id(s): i for i, s in enumerate(specs)}
        for label, clash in assign_labels(specs).items():
            where = [s.key_lines.get("label", s.line) for s in clash]
            problems.append((where[-1], f"[[{section}]] entries {[index[id(s)] + 1 for s in clash]} share the "
                                        f"label '{label}'; give each a distinct label = \"...\""))
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: p[0] or 0), source)
    return cfg


def _give_defenses_the_training_attack(cfg: ExperimentConfig, lines: _Lines, problems: list) -> None:
    """Every defense that takes an attack but names none gets the experiment's training attack."""
    from ..catalog import get_info

    wanted = cfg.settings["train"]["attack"]
    if wanted and wanted not in _installed("attack"):
        problems.append((lines.of("train", 0, "attack"), f"train.attack: '{wanted}' is not an installed attack; "
                         f"installed: {', '.join(_installed('attack')) or 'none'}"))
        return
    attack = training_attack_spec(cfg.settings, cfg.quick)
    for spec in cfg.methods.get("defenses", []):
        try:
            takes_attack = any(p.name == "attack" for p in get_info(spec.name).parameters)
        except Exception:  # noqa: BLE001 - an unknown name is reported by _check_method
            continue
        if takes_attack and spec.attack is None and attack is not None:
            spec.attack = dataclasses.replace(attack, params=dict(attack.params))


def resolve_stages(requested, model_given: bool = False) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """The requested stages plus every stage they need (:data:`STAGE_NEEDS`), in run order.

    Returns ``(stages, pulled_in)`` where ``pulled_in`` maps each added stage to the stages needing it.
    ``model_given``: the config's [model] is the model to evaluate, so ``train`` is not needed.
    """
    wanted = set(requested)
    pulled: dict[str, list[str]] = {}
    todo = list(requested)
    while todo:
        stage = todo.pop()
        for need in STAGE_NEEDS.get(stage, ()):
            if need == "train" and model_given:
                continue
            if need not in wanted:
                wanted.add(need)
                todo.append(need)
            if need not in requested:
                pulled.setdefault(need, [])
                if stage not in pulled[need]:
                    pulled[need].append(stage)
    return tuple(s for s in STAGES if s in wanted), pulled


def _param_text(value: Any) -> str:
    return value.label if isinstance(value, MethodSpec) else str(value)


def assign_labels(specs: list[MethodSpec]) -> dict[str, list[MethodSpec]]:
    """Give every spec without an alias the shortest label that tells it apart from its namesakes.

    A method that appears once is labelled by its name; variants of one method show only the
    parameters that differ between them (``lrp``, ``lrp(composite=epsilon_plus_flat)``). Returns the
    labels that still clash (two entries with the same alias, or identical entries), each with its specs.
    """
    by_name: dict[str, list[MethodSpec]] = {}
    for s in specs:
        by_name.setdefault(s.name, []).append(s)
    for group in by_name.values():
        free = [s for s in group if s.alias is None]
        if len(group) == 1:
            for s in free:
                s.alias = s.name
            continue
        keys = sorted({k for s in group for k in s.params} | ({"attack"} if any(s.attack for s in group) else set()))

        def value(s: MethodSpec, k: str) -> str | None:
            v = s.attack if k == "attack" else s.params.get(k)
            return None if v is None else _param_text(v)

        differing = [k for k in keys if len({value(s, k) for s in group}) > 1]
        for s in free:
            shown = [f"{k}={value(s, k)}" for k in differing if value(s, k) is not None]
            s.alias = f"{s.name}({','.join(shown)})" if shown else s.name
    seen: dict[str, list[MethodSpec]] = {}
    for s in specs:
        seen.setdefault(s.label, []).append(s)
    return {label: group for label, group in seen.items() if len(group) > 1}


def _check_method(spec: MethodSpec, kind: str, problems: list, created: bool = True) -> bool:
    """Create the method once (cheap) to check its name, parameters and the method's own checks.

    ``created=False`` only checks the name and the parameters given (used when a nested attack is
    already known to be invalid, so the defense is not blamed for it).
    """
    from ..catalog import _manager
    from ..methods import validate_params

    try:
        if created:
            instantiate(spec, kind)
        else:
            validate_params(_manager().get_info(spec.name, kind), spec.params)
        return True
    except Exception as exc:  # noqa: BLE001 - every problem is reported, with its line
        message = str(exc).splitlines()[0]
        problems.append((spec.line_of(message), f"{kind} '{spec.name}': {message}"))
        return False


def instantiate(spec: MethodSpec, kind: str):
    from ..catalog import _manager

    params = dict(spec.params)
    if spec.attack is not None:
        params["attack"] = instantiate(spec.attack, "attack")
    return _manager().create(spec.name, kind=kind, **params)


def load_config(path: str | Path | None, *, quick: bool = False, device: str | None = None,
                seed: int | None = None, precision: str | None = None) -> ExperimentConfig:
    """Read and validate a TOML config (``None``: the embedded default experiment)."""
    if path is None:
        return build_config({}, quick=quick, source="<default experiment>", device=device, seed=seed,
                            precision=precision)
    path = Path(path)
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError([(int(m.group(1)) if m else None, f"not valid TOML: {exc}")], str(path)) from None
    return build_config(raw, quick=quick, text=text, source=str(path), device=device, seed=seed,
                        precision=precision)
