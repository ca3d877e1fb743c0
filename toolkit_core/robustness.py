"""Robustness evaluation: clean accuracy, accuracy under each attack, and the per-point worst case.

``evaluate_robustness(model, data, attacks=[...])`` streams ``(x, y)`` batches (a ``DataLoader``, a
``Dataset`` or a tuple of tensors), classifies every point clean, runs every attack on the points the
model classifies correctly, and records per point whether it survived. Definitions (the protocol of
METHODS.md section 2, as in AutoAttack, Croce & Hein 2020, arXiv:2003.01690)::

    clean_i    = [argmax f(x_i) == y_i]
    robust_i^A = clean_i and [argmax f(A(x_i)) == y_i]          (accuracy under attack A)
    worst_i    = clean_i and for all A: [argmax f(A(x_i)) == y_i] (robust only if it survives every attack)

so ``worst_case_accuracy <= min_A accuracy[A] <= clean_accuracy``. The model is evaluated in eval
mode (and handed back unchanged); a model found in train mode, or whose forward pass is random
(two forwards of the same batch differ), triggers a warning, because robust accuracy is then not
well defined (a random forward calls for expectation-over-transformation attacks).

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
from .modelstate import check_model, guarded
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
        }
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

    def __str__(self) -> str:
        rows = self.rows()
        w = max(len(r[0]) for r in rows)
        lines = [f"robustness on {self.n} points", f"{'':{w}}  accuracy  attack"]
        lines += [f"{label:<{w}}  {acc:8.4f}  {details}".rstrip() for label, acc, details in rows]
        return "\n".join(lines)

    def __rich__(self):
        from rich.table import Table

        table = Table(title=f"robustness on {self.n} points")
        table.add_column("")
        table.add_column("accuracy", justify="right")
        table.add_column("attack")
        for label, acc, details in self.rows():
            table.add_row(label, f"{acc:.4f}", details)
        return table


def _attack_params(attack: Attack) -> dict[str, Any]:
    params = {}
    for p in attack.info.parameters:
        v = getattr(attack, p.name, p.default)
        params[p.name] = v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
    return {"name": attack.name, "params": params, "repr": _label(attack)}


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


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_determinism(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        a, b = model(x), model(x)
    scale = 1.0 + float(a.abs().max())
    diff = float((a - b).abs().max())
    if diff > 1e-4 * scale:
        warnings.warn(
            f"the model's forward pass is random: two forwards of the same batch differ by up to {diff:.3g}. "
            "Robust accuracy under deterministic attacks is then unreliable (gradients are noisy and the "
            "final prediction is a sample); make the forward deterministic or use an EOT attack.",
            RuntimeWarning,
            stacklevel=3,
        )


def evaluate_robustness(
    model: nn.Module,
    data,
    attacks: Iterable[AttackSpec] | Mapping[str, AttackSpec] = ("pgd",),
    device: torch.device | str | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool = False,
    num_threads: int | None = None,
) -> RobustnessResult:
    """Clean accuracy, accuracy under each attack and the per-point worst case over all attacks.

    ``data``: a ``DataLoader``, a ``Dataset`` or a tuple ``(x, y)``; inputs in [0, 1] (normalization
    inside the model). Batches are streamed to ``device`` (default: the model's device).
    ``attacks``: attack objects, registered names (created with default parameters), ``(name, params)``
    tuples, or a ``{label: attack}`` mapping. Each attack runs only on the points the model classifies
    correctly (a misclassified point is not robust whatever the attack does).
    ``limit``: evaluate at most this many points. ``progress``: show a progress bar.
    ``num_threads``: torch CPU threads during the evaluation (restored afterwards); ``1`` is often
    much faster for small models on a shared machine.
    Returns a :class:`RobustnessResult` (prints as a table; ``to_dict``/``to_json``).
    """
    check_model(model)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    resolved = _resolve_attacks(attacks)
    device = torch.device(device) if device is not None else _model_device(model)
    if model.training:
        warnings.warn(
            "the model is in train mode; evaluate_robustness evaluates it in eval mode (attacks always run "
            "in eval mode) and restores train mode afterwards. Call model.eval() to silence this warning.",
            UserWarning,
            stacklevel=2,
        )
    clean: list[torch.Tensor] = []
    robust: dict[str, list[torch.Tensor]] = {k: [] for k in resolved}
    seconds = dict.fromkeys(resolved, 0.0)
    seen = 0
    bar = None
    threads = contextlib.ExitStack()
    threads.enter_context(torch_threads(num_threads))
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("evaluating robustness", total=limit)
    try:
        with guarded(model, mode=False):
            for x, y in iterate_batches(data, batch_size):
                if limit is not None:
                    if seen >= limit:
                        break
                    x, y = x[: limit - seen], y[: limit - seen]
                x, y = x.to(device), y.to(device)
                if seen == 0:
                    _check_determinism(model, x)
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
                    robust[label].append(surv.cpu())
                seen += len(y)
                if bar is not None:
                    bar.update(task, advance=len(y))
    finally:
        threads.close()
        if bar is not None:
            bar.stop()
    if not clean:
        raise ValueError("data yielded no batches: nothing to evaluate")
    return RobustnessResult(
        clean=torch.cat(clean),
        robust={k: torch.cat(v) for k, v in robust.items()},
        params={k: _attack_params(a) for k, a in resolved.items()},
        seconds=seconds,
    )
