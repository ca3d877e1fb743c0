"""Helpers for defense plugins: the training attack, unwrapping DDP, crafting adversarial examples.

Defenses receive the model exactly as :func:`toolkit_core.fit` trains it, which under DDP is a
:class:`~torch.nn.parallel.DistributedDataParallel` wrapper. Adversarial examples are crafted on the
*unwrapped* module (an attack's forward/backward passes must not take part in DDP's gradient
synchronization), with the model in eval mode; the training forward passes go through the wrapper.
"""

from __future__ import annotations

import torch
from torch import nn

from ..catalog import resolve
from ..methods import Defense, Scale


def training_attack(scale: Scale | None = None, name: str | None = None, contract: bool = False):
    """An attack for adversarial training, created from the catalog: ``name``, else the first installed
    attack (by name) whose class gives training parameters (:meth:`~toolkit_core.methods.Attack.training_params`)
    for ``scale`` (default ``Scale()``: L-inf 8/255). ``contract=True``: with the class's cheap
    contract-check parameters instead (the defenses' contract checks use it)."""
    from ..catalog import get_info, list_methods

    scale = scale or Scale()
    for candidate in [name] if name else list_methods("attack"):
        cls = get_info(candidate).cls
        params = cls.training_params(scale)
        if params is not None or name:
            if contract:
                params = {**(params or {}), **cls.contract_params()}
            return resolve(candidate, kind="attack", **(params or {}))
    raise RuntimeError("no installed attack gives training parameters (Attack.training_params); pass "
                       "attack=toolkit_core.create(NAME, ...) to the defense")


def resolve_attack(attack):
    """An Attack object, a registered attack name, ``(name, params)`` or ``{"name": ..., **params}``,
    read by :func:`toolkit_core.catalog.resolve`."""
    if attack is None:
        raise TypeError("this defense needs an attack: pass attack=toolkit_core.create(NAME, ...) (any Attack "
                        "object; `torchtrust list --kind attack`). Experiments build it from their config.")
    try:
        return resolve(attack, kind="attack")
    except TypeError as exc:
        raise TypeError(f"attack must be a toolkit_core Attack object (e.g. toolkit_core.create(NAME, eps=0.1)) "
                        f"or a registered attack name: {exc}") from None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (else ``model``)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def craft(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Adversarial examples for ``(x, y)``, crafted on the unwrapped model in eval mode.

    The Attack call switches the model to eval mode and freezes its parameters; this function makes
    sure the model is back in the mode it was in (train mode during training) afterwards.
    """
    base = unwrap_model(model)
    modes = [(m, m.training) for m in base.modules()]
    try:
        x_adv = attack(base, x.detach(), y)
    finally:
        for m, training in modes:
            m.training = training
    return x_adv.detach()


def eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of the unwrapped model in eval mode, without gradients; every module's mode is restored."""
    base = unwrap_model(model)
    modes = [(m, m.training) for m in base.modules()]
    base.eval()
    try:
        with torch.no_grad():
            return base(x)
    finally:
        for m, training in modes:
            m.training = training


def repr_with_attack(defense, attack) -> str:
    """``Name(attack=..., other=...)``: a defense's repr including the attack object it was given."""
    from ..methods import Method

    base = Method.__repr__(defense)
    if attack is None:
        return base
    inner = base[base.index("(") + 1 : -1]
    return f"{type(defense).__name__}(attack={attack!r}{', ' + inner if inner else ''})"


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


class AdversarialDefense(Defense):
    """A defense trained against an attack object (PGD-AT, TRADES, ALP, AALP, ...).

    Holds ``attack`` (an :class:`~toolkit_core.methods.Attack`; ``None`` is allowed at creation, e.g. to
    inspect the defense, but training then asks for one), shows it in ``repr``, and gives the contract
    checks a cheap attack (:func:`training_attack` with the attack class's contract parameters).
    Subclasses call ``self._set_attack(attack)`` in ``__init__``.
    """

    def _set_attack(self, attack) -> None:
        from ..methods import Attack

        if attack is not None and not isinstance(attack, Attack):
            raise TypeError(
                f"{self.name}: attack must be an Attack object such as create(NAME, eps=...), got {attack!r}"
            )
        self._attack = attack

    @classmethod
    def contract_params(cls) -> dict:
        return {"attack": training_attack(Scale(eps=0.1, quick=True), contract=True)}

    def __repr__(self) -> str:
        return repr_with_attack(self, self._attack)

    @property
    def attack(self):
        """The attack used to craft ``x_adv`` (raises a clear error when none was given)."""
        return resolve_attack(self._attack)

    def loss(self, model, x, y):
        """``objective(model, x, x_adv, y)`` with ``x_adv`` crafted by :attr:`attack` on the model in
        eval mode (:func:`craft`); subclasses define ``objective`` and may override this."""
        return self.objective(model, x, craft(self.attack, model, x, y), y)
