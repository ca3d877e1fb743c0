"""AutoAttack: a sequential ensemble of registered attacks (Croce & Hein 2020, arXiv:2003.01690)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import fx, nn

from toolkit_core import params
from toolkit_core.attacks import check_classes
from toolkit_core.methods import Attack, Scale
from toolkit_core.progress import progress

#: The attacks of each version as ``(label, registered name, parameters)``; ``eps``, ``norm`` and
#: ``seed`` are added to every attack that accepts them. AutoAttack's reference schedule.
VERSIONS: dict[str, tuple[tuple[str, str, dict[str, Any]], ...]] = {
    "standard": (
        ("apgd-ce", "apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
        ("apgd-t", "apgd_t", {"steps": 100, "n_target_classes": 9, "restarts": 1}),
        ("fab-t", "fab", {"targeted": True, "steps": 100, "n_target_classes": 9, "restarts": 1}),
        ("square", "square", {"n_queries": 5000, "p_init": 0.8}),
    ),
    "plus": (
        ("apgd-ce", "apgd", {"loss": "ce", "steps": 100, "restarts": 5}),
        ("apgd-dlr", "apgd", {"loss": "dlr", "steps": 100, "restarts": 5}),
        ("fab", "fab", {"targeted": False, "steps": 100, "restarts": 5}),
        ("square", "square", {"n_queries": 5000, "p_init": 0.8}),
        ("apgd-t", "apgd_t", {"steps": 100, "n_target_classes": 9, "restarts": 1}),
        ("fab-t", "fab", {"targeted": True, "steps": 100, "n_target_classes": 9, "restarts": 1}),
    ),
}


class PassCounter(nn.Module):
    """Wraps a model and counts forward and backward passes, per sample.

    ``forward`` counts ``x.shape[0]`` samples; a backward through its output counts the output's
    batch size. Not traceable by :mod:`torch.fx` on purpose (tracing would drop the counting), so
    graph rewrites of the model fall back to running it as it is.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.forward_samples = 0
        self.backward_samples = 0

    def forward(self, x):
        if isinstance(x, fx.Proxy):
            raise TypeError("PassCounter counts real calls and cannot be traced")
        self.forward_samples += int(x.shape[0])
        out = self.model(x)
        if out.requires_grad:
            n = int(out.shape[0])

            def count(grad, n=n):
                self.backward_samples += n

            out.register_hook(count)
        return out


@dataclasses.dataclass
class AutoAttackResult:
    """One AutoAttack run on a batch.

    ``x_adv``: the adversarial inputs (the clean input where no attack succeeded). ``clean``: ``(B,)``
    bool, correct clean. ``broken[label]``: ``(B,)`` bool, first broken by that attack. ``robust``:
    ``(B,)`` bool, correct after every attack. ``forward``/``backward[label]``: per-sample forward
    and backward passes the attack spent; ``seconds[label]`` its wall time. ``overhead_*``: the passes
    of AutoAttack itself (clean check and the check after each attack).
    """

    x_adv: torch.Tensor
    clean: torch.Tensor
    broken: dict[str, torch.Tensor]
    robust: torch.Tensor
    forward: dict[str, int]
    backward: dict[str, int]
    seconds: dict[str, float]
    overhead_forward: int = 0

    def robust_after(self) -> dict[str, float]:
        """Robust accuracy after each attack in order (cumulative), the last one being the worst case."""
        alive = self.clean.clone()
        out = {}
        for label, b in self.broken.items():
            alive &= ~b
            out[label] = float(alive.float().mean())
        return out

    @property
    def worst_case_accuracy(self) -> float:
        return float(self.robust.float().mean())

    @property
    def total_forward(self) -> int:
        return sum(self.forward.values()) + self.overhead_forward

    @property
    def total_backward(self) -> int:
        return sum(self.backward.values())


def _accepts(attack_cls, name: str) -> bool:
    return any(p.name == name for p in attack_cls.info.parameters)


class AutoAttack(Attack):
    """AutoAttack: attacks run in sequence, each on the points still robust; per-sample worst case.

    ``version="standard"``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries);
    ``"plus"``: APGD-CE and APGD-DLR (5 restarts), FAB (5 restarts), Square, APGD-T, FAB-T — the
    reference schedule (:data:`VERSIONS`). ``attacks`` replaces the version's list by registered names
    or ``(name, params)`` pairs, so any installed attack, a third party's included, can join by name;
    every attack that takes ``eps``, ``norm`` or ``seed`` gets the ensemble's.

    For a batch: ``robust_0 = [argmax f(x) = y]``; for attack ``A_j`` in order, on the points with
    ``robust_{j-1}``, ``x_adv <- A_j(x)`` and ``robust_j = robust_{j-1} and [argmax f(x_adv) = y]``.
    The returned input is, per point, the first successful attack's (else the clean input). Robust
    accuracy is ``mean(robust_last)``, never above any single member's. :meth:`run` also returns the
    per-attack breakdown and the forward/backward passes spent (``last_run`` holds the latest).
    """

    name = "autoattack"
    summary = "AutoAttack: APGD-CE, APGD-T, FAB-T, Square (or any registered attacks) on the points still robust."
    citation = "arXiv:2003.01690"
    ensemble = True

    def __init__(
        self,
        eps: float = 8 / 255,
        norm: Literal["linf", "l2"] = "linf",
        version: Literal["standard", "plus"] = "standard",
        attacks: Sequence[str | tuple[str, dict]] | None = None,
        seed: int | None = 0,
        progress: bool = False,
    ):
        params.number("autoattack", "eps", eps, meaning="the radius of the threat ball")
        params.choice("autoattack", "norm", norm, ("linf", "l2"))
        params.choice("autoattack", "version", version, sorted(VERSIONS))
        params.seed("autoattack", seed)
        self.eps = float(eps)
        self.norm = norm
        self.version = version
        self.attacks = None if attacks is None else [a if isinstance(a, str) else (a[0], dict(a[1])) for a in attacks]
        self.seed = seed
        self.progress = bool(progress)
        self.last_run: AutoAttackResult | None = None
        self._pending: list[AutoAttackResult] = []
        self._members: dict[str, Attack] | None = None

    @classmethod
    def contract_params(cls) -> dict:
        return {"attacks": [("apgd", {"steps": 3}), ("square", {"n_queries": 10})]}

    #: The quick experiment's light ensemble (its members' per-attack results are in the report).
    QUICK_MEMBERS = (("apgd", {"steps": 10}), ("apgd_t", {"steps": 5, "n_target_classes": 2}),
                     ("fab", {"steps": 5, "n_target_classes": 2}), ("square", {"n_queries": 50}))

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """Evaluation: the standard version, seeded; quick: the same members on small budgets."""
        params: dict[str, Any] = {"eps": scale.eps, "version": "standard", "seed": 0}
        if scale.quick:
            params["attacks"] = [[name, dict(p)] for name, p in cls.QUICK_MEMBERS]
        return [params]

    @classmethod
    def experiment_members(cls, scale: Scale) -> tuple[str, ...]:
        """APGD-T, FAB-T and Square run only inside the ensemble, whose per-member results (cumulative
        accuracy, passes) are in the report and whose black-box member is checked against the
        gradient-based ones (:mod:`toolkit_core.robustness`); APGD-CE also runs on its own, the first
        iterative attack of the gradient-masking checks beside PGD."""
        return ("apgd_t", "fab", "square")

    def members(self) -> dict[str, Attack]:
        """The attacks of the ensemble, created from the catalog: ``{label: attack}`` in run order."""
        if self._members is None:
            from toolkit_core.catalog import create, get_info

            if self.attacks is None:
                specs = [(label, name, dict(params)) for label, name, params in VERSIONS[self.version]]
            else:
                specs = []
                for a in self.attacks:
                    name, params = (a, {}) if isinstance(a, str) else a
                    if not isinstance(name, str) or not isinstance(params, Mapping):
                        raise TypeError(f"autoattack: attacks holds names or (name, params) pairs, got {a!r}")
                    specs.append((name, name, dict(params)))
            out: dict[str, Attack] = {}
            for label, name, params in specs:
                info = get_info(name)
                if info.kind != "attack":
                    raise ValueError(f"autoattack: '{name}' is a {info.kind}, not an attack")
                names = {p.name for p in info.parameters}
                for key, value in (("eps", self.eps), ("norm", self.norm), ("seed", self.seed)):
                    if key in names and key not in params:
                        params[key] = value
                base, k = label, 2
                while label in out:
                    label, k = f"{base}#{k}", k + 1
                out[label] = create(name, **params)
            self._members = out
        return self._members

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AutoAttackResult:
        """Run the ensemble on one batch (model in eval mode, frozen: call through the object or
        :func:`toolkit_core.attacks.run_attack` for that); returns the full :class:`AutoAttackResult`."""
        members = self.members()
        counter = PassCounter(model)
        x_adv = x.clone()
        with torch.no_grad():
            logits = model(x)
        check_classes(logits, y)
        clean = logits.argmax(1) == y
        alive = clean.clone()
        broken, fwd, bwd, secs = {}, {}, {}, {}
        overhead = x.shape[0]
        with progress(f"autoattack ({self.version}, {self.norm})", total=len(members), enabled=self.progress) as bar:
            for label, attack in members.items():
                idx = alive.nonzero().flatten()
                b = torch.zeros_like(alive)
                f0, b0 = counter.forward_samples, counter.backward_samples
                t0 = time.perf_counter()
                if len(idx):
                    cand = attack.perturb(counter, x[idx], y[idx]).detach()
                    with torch.no_grad():
                        fooled = model(cand).argmax(1) != y[idx]
                    overhead += len(idx)
                    hit = idx[fooled]
                    x_adv[hit] = cand[fooled]
                    b[hit] = True
                    alive[hit] = False
                secs[label] = time.perf_counter() - t0
                fwd[label] = counter.forward_samples - f0
                bwd[label] = counter.backward_samples - b0
                broken[label] = b
                bar.advance()
                bar.update(info=f"{label}: robust {float(alive.float().mean()):.3f}")
        self.last_run = AutoAttackResult(x_adv, clean, broken, alive, fwd, bwd, secs, overhead)
        return self.last_run

    def perturb(self, model, x, y):
        r = self.run(model, x, y)
        self._pending.append(r)
        return r.x_adv

    def details(self) -> dict[str, Any] | None:
        """The per-point breakdown of the runs since the last call (one call of the attack may run in
        several chunks), for :func:`toolkit_core.evaluate_robustness`; ``None`` if there was none."""
        runs, self._pending = self._pending, []
        if not runs:
            return None
        broken = {k: torch.cat([r.broken[k] for r in runs]) for k in runs[0].broken}
        return {"broken": broken, "forward": sum(r.total_forward for r in runs),
                "backward": sum(r.total_backward for r in runs)}
