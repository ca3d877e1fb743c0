"""Robustness evaluation: clean accuracy, accuracy under each attack, and the per-point worst case.

``evaluate_robustness(model, data, attacks=[...])`` streams ``(x, y)`` batches (a ``DataLoader``, a
``Dataset`` or a tuple of tensors), classifies every point clean, runs every attack on the points the
model classifies correctly, and records per point whether it survived. Definitions (the protocol of
docs/specs.md section 2, as in AutoAttack, Croce & Hein 2020, arXiv:2003.01690)::

    clean_i    = [argmax f(x_i) == y_i]
    robust_i^A = clean_i and [argmax f(A(x_i)) == y_i]          (accuracy under attack A)
    worst_i    = clean_i and for all A: [argmax f(A(x_i)) == y_i] (robust only if it survives every attack)

so ``worst_case_accuracy <= min_A accuracy[A] <= clean_accuracy``. The model is evaluated in eval
mode (and handed back unchanged). Batches are moved to the device one at a time: the data set is
never loaded whole.

**Gradient-masking checks** (Athalye, Carlini & Wagner 2018, arXiv:1802.00420; Carlini et al. 2019,
arXiv:1902.06705, section 4): the result's ``warnings`` (also issued as Python warnings and shown in
the table) flag

* a model found in train mode, or a forward pass that is random (two forwards of the same batch
  differ): robust accuracy is then not well defined;
* a black-box attack (``uses_gradients = False``) reaching lower accuracy than every gradient-based one;
* inside an ensemble (a composite attack with ``members()``, e.g. AutoAttack), a black-box member that
  lowers the accuracy left by the gradient-based members before it by more than ``SQUARE_ALPHA`` (0.2%
  of the points): AutoAttack's own "Square Attack improves the robustness evaluation" flag;
* a single-step attack (no ``steps``, or ``steps = 1``) stronger than an iterative one of the same norm
  and at least the same ``eps``, e.g. FGSM beating PGD;
* with ``checks=True``, on up to ``check_points`` correctly classified points of the first batch, the
  first iterative gradient-based attack rerun at ``eps * (0.5, 1, 2)``: accuracy that does not fall as
  eps grows, and at an unbounded radius (L-inf 1, L2 ``sqrt(d)``: the whole image box) accuracy that
  does not reach 0. A step size ``alpha``, if the attack has one, is scaled with eps.

Example::

    import toolkit_core as tt
    res = tt.evaluate_robustness(model, test_loader, attacks=["fgsm", tt.create("pgd", steps=20)])
    print(res)                # a table
    res.to_json()             # {"clean_accuracy": ..., "attacks": {...}, "worst_case_accuracy": ...}
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .data import iterate_batches
from .methods import Attack
from .models import digits_model  # noqa: F401 - re-exported: the reference model of the attack tests
from .modelstate import check_model, guarded, model_device
from .precision import autocast, check_precision
from .threads import torch_threads

__all__ = ["RobustnessResult", "digits_model", "evaluate_robustness"]

AttackSpec = Attack | str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]  # read by catalog.resolve


@dataclasses.dataclass
class RobustnessResult:
    """Per-point outcomes of a robustness evaluation, with the summary numbers as properties.

    ``clean``: ``(N,)`` bool, clean prediction correct. ``robust[label]``: ``(N,)`` bool, correct
    clean *and* under attack ``label``. ``params[label]``: the attack's name and parameters.
    ``seconds[label]``: wall time spent in the attack.
    """

    clean: torch.Tensor
    robust: dict[str, torch.Tensor]
    params: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: composite attacks (e.g. an ensemble): per member, ``(N,)`` bool "first broken by it"
    components: dict[str, dict[str, torch.Tensor]] = dataclasses.field(default_factory=dict)
    #: composite attacks: per-sample forward and backward passes spent
    passes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    #: the eps sweep of the checks: ``{"attack": label, "eps": [...], "accuracy": [...]}``
    sweep: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.clean.numel())

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean.float().mean()) if self.n else float("nan")

    @property
    def accuracy(self) -> dict[str, float]:
        """Accuracy under each attack (a point counts if it is correct clean and under the attack)."""
        return {k: (float(v.float().mean()) if self.n else float("nan")) for k, v in self.robust.items()}

    @property
    def worst_case(self) -> torch.Tensor:
        """``(N,)`` bool: correct clean and under every attack."""
        out = self.clean.clone()
        for v in self.robust.values():
            out &= v
        return out

    @property
    def worst_case_accuracy(self) -> float:
        return float(self.worst_case.float().mean()) if self.n else float("nan")

    def to_dict(self, per_point: bool = False) -> dict[str, Any]:
        """Plain-Python summary; ``per_point=True`` adds the boolean outcome of every point."""
        out: dict[str, Any] = {
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "attacks": {
                k: {"accuracy": acc, "params": self.params[k], "seconds": self.seconds[k]}
                for k, acc in self.accuracy.items()
            },
            "worst_case_accuracy": self.worst_case_accuracy,
            "warnings": list(self.warnings),
        }
        for k in self.components:  # robust accuracy after each member, cumulative
            out["attacks"][k]["components"] = self.component_accuracy(k)
        for k, p in self.passes.items():
            out["attacks"][k]["passes"] = dict(p)
        if self.sweep:
            out["sweep"] = dict(self.sweep)
        if per_point:
            out["per_point"] = {
                "clean": self.clean.tolist(),
                **{k: v.tolist() for k, v in self.robust.items()},
                "worst_case": self.worst_case.tolist(),
            }
        return out

    def to_json(self, per_point: bool = False, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(per_point), indent=indent)

    def rows(self) -> list[tuple[str, float, str]]:
        """``(label, accuracy, details)`` rows: clean, one per attack, worst case."""
        rows = [("clean", self.clean_accuracy, "")]
        for k, acc in self.accuracy.items():
            rows.append((k, acc, f"{self.params[k]['repr']}  {self.seconds[k]:.2f}s"))
        rows.append(("worst case (all attacks)", self.worst_case_accuracy, ""))
        return rows

    def component_accuracy(self, label: str) -> dict[str, float]:
        """Robust accuracy after each member of composite attack ``label``, cumulative, in order."""
        alive = self.clean.clone()
        out = {}
        for sub, b in self.components.get(label, {}).items():
            alive &= ~b
            out[sub] = float(alive.float().mean()) if self.n else float("nan")
        return out

    def __str__(self) -> str:
        rows = self.rows()
        w = max(len(r[0]) for r in rows)
        lines = [f"robustness on {self.n} points", f"{'':{w}}  accuracy  attack"]
        lines += [f"{label:<{w}}  {acc:8.4f}  {details}".rstrip() for label, acc, details in rows]
        lines += [f"warning: {msg}" for msg in self.warnings]
        return "\n".join(lines)

    def __rich__(self):
        from rich.table import Table

        table = Table(title=f"robustness on {self.n} points")
        table.add_column("")
        table.add_column("accuracy", justify="right")
        table.add_column("attack")
        for label, acc, details in self.rows():
            table.add_row(label, f"{acc:.4f}", details)
        if self.warnings:
            from rich.console import Group
            from rich.text import Text

            return Group(table, *(Text(f"warning: {m}", style="yellow") for m in self.warnings))
        return table


def _attack_params(attack: Attack) -> dict[str, Any]:
    params = {}
    for p in attack.info.parameters:
        v = getattr(attack, p.name, p.default)
        params[p.name] = v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
    out: dict[str, Any] = {"name": attack.name, "params": params, "repr": _label(attack)}
    members = getattr(attack, "members", None)
    if callable(members):  # an ensemble: which member ran under which label, and which are black-box
        out["members"] = {k: {"name": a.name, "black_box": not a.uses_gradients} for k, a in members().items()}
    return out


def _label(attack: Attack) -> str:
    """``name(non-default params)``, e.g. ``pgd(eps=0.1, steps=20)``."""
    text = repr(attack)
    cls = type(attack).__name__
    return attack.name + (text[len(cls):] if text.startswith(cls + "(") else "")


def _resolve_attacks(attacks: Iterable[AttackSpec] | Mapping[str, AttackSpec]) -> dict[str, Attack]:
    from .catalog import resolve

    items = list(attacks.items()) if isinstance(attacks, Mapping) else [(None, a) for a in attacks]
    out: dict[str, Attack] = {}
    for label, spec in items:
        try:
            obj = resolve(spec, kind="attack")
        except TypeError as exc:
            raise TypeError(f"attacks must be Attack objects, registered attack names, (name, params) tuples or "
                            f"{{'name': ..., **params}} dicts: {exc}") from None
        label = label or obj.name
        if label in out:  # two attacks of the same name: label them by their parameters
            label = _label(obj)
            base, k = label, 2
            while label in out:
                label, k = f"{base}#{k}", k + 1
        out[label] = obj
    return out


def _check_determinism(model: nn.Module, x: torch.Tensor) -> str | None:
    with torch.no_grad():
        a, b = model(x), model(x)
    scale = 1.0 + float(a.abs().max())
    diff = float((a - b).abs().max())
    if diff > 1e-4 * scale:
        return (
            f"the model's forward pass is random: two forwards of the same batch differ by up to {diff:.3g}. "
            "Robust accuracy under deterministic attacks is then unreliable (gradients are noisy and the "
            "final prediction is a sample); make the forward deterministic or use an EOT attack."
        )
    return None


def _steps(attack: Attack) -> int:
    return int(getattr(attack, "steps", 1) or 1)


def _is_composite(attack: Attack) -> bool:
    return callable(getattr(attack, "details", None))


def _with_eps(attack: Attack, eps: float, reach: bool = False) -> Attack:
    """A copy of ``attack`` at radius ``eps`` (step size ``alpha`` scaled alike; with ``reach``, at least
    ``2.5 eps / steps`` so that the steps can cross the ball, Madry et al.'s rule)."""
    params = {p.name: getattr(attack, p.name) for p in attack.info.parameters if hasattr(attack, p.name)}
    old = float(params["eps"])
    params["eps"] = float(eps)
    if "alpha" in params and old > 0:
        params["alpha"] = float(params["alpha"]) * eps / old
        if reach:
            params["alpha"] = max(params["alpha"], 2.5 * eps / _steps(attack))
    return type(attack)(**params)


#: AutoAttack's threshold for its black-box member lowering the accuracy the gradient-based ones left
#: (Croce & Hein 2020, the reference implementation's check on Square Attack): 0.2 % of the points
SQUARE_ALPHA = 0.002


def black_box_gains(components: Mapping[str, Any], members: Mapping[str, Mapping[str, Any]], start: Any,
                    margin: float) -> list[tuple[str, float, float]]:
    """``(member, accuracy before it, accuracy after it)`` for each black-box member of an ensemble that
    lowers the accuracy the gradient-based members before it left by more than ``margin``.

    ``components``: the accuracy after each member, cumulative, in run order (``component_accuracy``);
    ``members``: ``{label: {"black_box": bool}}`` as recorded in the result's ``params[...]["members"]``;
    ``start``: the clean accuracy. Non-numbers and NaN never count. Used per seed here (``SQUARE_ALPHA``)
    and on the means over seeds by the experiment's health checks (their masking margin)."""
    out: list[tuple[str, float, float]] = []
    before, white_seen = start, False
    for sub, acc in components.items():
        black = bool((members.get(sub) or {}).get("black_box", False))
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (acc, before))
        if black and white_seen and numbers and acc < before - margin:
            out.append((sub, float(before), float(acc)))
        white_seen = white_seen or (sub in members and not black)
        before = acc
    return out


def _ensemble_warnings(res: RobustnessResult) -> list[str]:
    """A black-box member of an ensemble breaking points the gradient-based members before it left robust."""
    out: list[str] = []
    for label in res.components:
        members = res.params.get(label, {}).get("members") or {}
        for sub, before, acc in black_box_gains(res.component_accuracy(label), members, res.clean_accuracy,
                                                SQUARE_ALPHA):
            out.append(
                f"gradient masking? inside {label}, the black-box member {sub} lowers the accuracy the "
                f"gradient-based members left from {before:.4f} to {acc:.4f}: gradients may be obfuscated "
                "(AutoAttack's check, Croce & Hein 2020); run the black-box attack with more queries and "
                "restarts, or an adaptive attack."
            )
    return out


def _comparison_warnings(res: RobustnessResult, resolved: Mapping[str, Attack]) -> list[str]:
    """Black box beating white box, inside an ensemble too; single-step beating iterative (needs one point
    of margin)."""
    out: list[str] = []
    if not res.n:
        return out
    out += _ensemble_warnings(res)
    acc = res.accuracy
    tol = 0.5 / res.n
    white = {k: a for k, a in resolved.items() if a.uses_gradients}
    black = {k: a for k, a in resolved.items() if not a.uses_gradients}
    if white and black:
        best_white = min(acc[k] for k in white)
        for k in black:
            if acc[k] < best_white - tol:
                out.append(
                    f"gradient masking? the black-box attack {k} (accuracy {acc[k]:.4f}) beats every gradient-based "
                    f"attack (best {best_white:.4f}): gradients may be obfuscated (Athalye et al. 2018); "
                    "evaluate with BPDA/EOT or adaptive attacks."
                )
    for k1, a1 in white.items():
        for k2, a2 in white.items():
            if k1 == k2 or _is_composite(a1) or _is_composite(a2):
                continue
            if _steps(a1) != 1 or _steps(a2) <= 1:
                continue
            if getattr(a1, "norm", "linf") != getattr(a2, "norm", "linf"):
                continue
            e1, e2 = getattr(a1, "eps", None), getattr(a2, "eps", None)
            if e1 is None or e2 is None or e2 < e1:
                continue
            alpha = getattr(a2, "alpha", None)
            if alpha is not None and alpha * _steps(a2) < e2:  # the iterative attack cannot reach its radius
                continue
            if acc[k1] < acc[k2] - tol:
                out.append(
                    f"gradient masking? the single-step attack {k1} (accuracy {acc[k1]:.4f}) beats the iterative "
                    f"{k2} ({acc[k2]:.4f}) at no larger eps: iterative attacks should be stronger; the loss surface "
                    "may be masked near the data (check random starts and step sizes)."
                )
    return out


def _sweep_warnings(model, x, y, resolved: Mapping[str, Attack], points: int) -> tuple[list[str], dict[str, Any]]:
    """Rerun the first iterative gradient-based attack at 0.5x, 1x, 2x eps and unbounded."""
    cand = [
        (k, a) for k, a in resolved.items()
        if a.uses_gradients and not _is_composite(a) and _steps(a) > 1 and float(getattr(a, "eps", 0) or 0) > 0
    ]
    if not cand:
        return [], {}
    label, attack = cand[0]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:points], y[ok][:points]
    n = len(y)
    if n == 0:
        return [], {}
    eps = float(attack.eps)
    norm = getattr(attack, "norm", "linf")
    unbounded = 1.0 if norm != "l2" else float(x[0].numel()) ** 0.5
    radii = [0.5 * eps, eps, 2 * eps, unbounded]
    accs = []
    for e in radii:
        x_adv = _with_eps(attack, e, reach=e == unbounded)(model, x, y)
        with torch.no_grad():
            accs.append(float((model(x_adv).argmax(1) == y).float().mean()))
    tol = 1.0 / n + 1e-9
    out = []
    finite = accs[:3]
    rising = any(b > a + tol for a, b in zip(finite, finite[1:]))
    if rising or (finite[0] > 0 and finite[-1] >= finite[0]):
        out.append(
            f"gradient masking? accuracy under {label} does not fall as eps grows "
            f"(eps {', '.join(f'{e:.4g}' for e in radii[:3])}: {', '.join(f'{a:.3f}' for a in finite)} on {n} points)."
        )
    if accs[3] > 0:
        out.append(
            f"gradient masking? {label} with an unbounded radius (eps {unbounded:.4g}, the whole input box) leaves "
            f"accuracy {accs[3]:.3f} on {n} points instead of 0: the attack is not finding existing adversarial inputs."
        )
    return out, {"attack": label, "eps": radii, "accuracy": accs, "points": n}


def evaluate_robustness(
    model: nn.Module,
    data,
    attacks: Iterable[AttackSpec] | Mapping[str, AttackSpec] | None = None,
    device: torch.device | str | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool = False,
    num_threads: int | None = None,
    checks: bool = True,
    check_points: int = 32,
    precision: str | None = None,
) -> RobustnessResult:
    """Clean accuracy, accuracy under each attack and the per-point worst case over all attacks.

    ``data``: a ``DataLoader``, a ``Dataset`` or a tuple ``(x, y)``; inputs in [0, 1] (normalization
    inside the model). Batches are streamed to ``device`` (default: the model's device).
    ``attacks`` (required): attack objects, registered names (created with default parameters),
    ``(name, params)`` tuples, ``{"name": ..., **params}`` dicts, or a ``{label: attack}`` mapping. Each
    attack runs only on the points the model classifies correctly (a misclassified point is not robust
    whatever the attack does).
    ``limit``: evaluate at most this many points. ``progress``: show a progress bar.
    ``num_threads``: torch CPU threads during the evaluation (restored afterwards); ``1`` is often
    much faster for small models on a shared machine. ``checks``: run the eps sweep of the
    gradient-masking checks (module docstring) on ``check_points`` points of the first batch; the
    other checks always run. Warnings land in ``result.warnings`` and are issued as ``RuntimeWarning``
    (train mode: ``UserWarning``).
    ``precision``: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only): every forward pass, the attacks'
    included, under :func:`torch.autocast` (:mod:`toolkit_core.precision`: the attacks' losses, the
    perturbation and its gradient stay float32); ``None`` (default) leaves the caller's setting.
    Returns a :class:`RobustnessResult` (prints as a table; ``to_dict``/``to_json``).
    """
    check_model(model)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    if attacks is None:
        raise ValueError("attacks is required: attack objects, registered names (`torchtrust list --kind attack`), "
                         "(name, params) tuples or a {label: attack} mapping")
    resolved = _resolve_attacks(attacks)
    device = torch.device(device) if device is not None else model_device(model)
    if precision is not None:
        precision = check_precision(precision, device)
    notes: list[str] = []
    if model.training:
        msg = (
            "the model is in train mode; evaluate_robustness evaluates it in eval mode (attacks always run "
            "in eval mode) and restores train mode afterwards. Call model.eval() to silence this warning."
        )
        notes.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    issued = len(notes)
    sweep: dict[str, Any] = {}
    components: dict[str, dict[str, list[torch.Tensor]]] = {}
    passes: dict[str, dict[str, int]] = {}
    clean: list[torch.Tensor] = []
    robust: dict[str, list[torch.Tensor]] = {k: [] for k in resolved}
    seconds = dict.fromkeys(resolved, 0.0)
    seen = 0
    bar = None
    threads = contextlib.ExitStack()
    threads.enter_context(torch_threads(num_threads))
    if precision is not None:
        threads.enter_context(autocast(precision, device))
    if progress:
        from . import progress as tp

        total = limit
        if total is None and isinstance(data, torch.utils.data.DataLoader):
            sampler = data.batch_sampler
            with contextlib.suppress(TypeError):
                total = len(sampler.indices()) if hasattr(sampler, "indices") else len(data.dataset)
        bar = threads.enter_context(tp.progress("robustness: images", total))
    try:
        with guarded(model, mode=False):
            for x, y in iterate_batches(data, batch_size):
                if limit is not None:
                    if seen >= limit:
                        break
                    x, y = x[: limit - seen], y[: limit - seen]
                x, y = x.to(device), y.to(device)
                if seen == 0:
                    msg = _check_determinism(model, x)
                    if msg:
                        notes.append(msg)
                    if checks and not msg:
                        found, sweep = _sweep_warnings(model, x, y, resolved, check_points)
                        notes.extend(found)
                with torch.no_grad():
                    ok = model(x).argmax(1) == y
                clean.append(ok.cpu())
                idx = ok.nonzero().flatten()
                for label, attack in resolved.items():
                    surv = torch.zeros_like(ok)
                    if len(idx):
                        t0 = time.perf_counter()
                        x_adv = attack(model, x[idx], y[idx])
                        with torch.no_grad():
                            surv[idx] = model(x_adv).argmax(1) == y[idx]
                        seconds[label] += time.perf_counter() - t0
                    if _is_composite(attack):
                        det = attack.details() if len(idx) else None
                        comp = components.setdefault(label, {})
                        for sub in det["broken"] if det else comp:
                            full = torch.zeros_like(ok)
                            if det:
                                full[idx] = det["broken"][sub].to(full.device)
                            comp.setdefault(sub, [torch.zeros(seen, dtype=torch.bool)]).append(full.cpu())
                        if det:
                            p = passes.setdefault(label, {"forward": 0, "backward": 0})
                            p["forward"] += int(det.get("forward", 0))
                            p["backward"] += int(det.get("backward", 0))
                    robust[label].append(surv.cpu())
                seen += len(y)
                if bar is not None:
                    bar.advance(len(y))
    finally:
        threads.close()
    if not clean:
        raise ValueError("data yielded no batches: nothing to evaluate")
    res = RobustnessResult(
        clean=torch.cat(clean),
        robust={k: torch.cat(v) for k, v in robust.items()},
        params={k: _attack_params(a) for k, a in resolved.items()},
        seconds=seconds,
        components={k: {s: torch.cat(v)[: seen] for s, v in c.items()} for k, c in components.items()},
        passes=passes,
        sweep=sweep,
    )
    notes.extend(_comparison_warnings(res, resolved))
    for msg in notes[issued:]:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    res.warnings = notes
    return res
