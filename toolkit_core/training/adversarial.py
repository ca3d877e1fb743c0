"""Helpers for defense plugins: the default attack, unwrapping DDP, crafting adversarial examples.

Defenses receive the model exactly as :func:`toolkit_core.fit` trains it, which under DDP is a
:class:`~torch.nn.parallel.DistributedDataParallel` wrapper. Adversarial examples are crafted on the
*unwrapped* module (an attack's forward/backward passes must not take part in DDP's gradient
synchronization), with the model in eval mode; the training forward passes go through the wrapper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..methods import Defense

#: Parameters of the attack a defense creates when none is given: ``create("pgd", **DEFAULT_ATTACK)``.
#: CIFAR-like L-inf PGD-10 (Madry et al. 2018): eps 8/255, step 2/255, random start.
DEFAULT_ATTACK: dict[str, Any] = {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10}


def default_attack():
    """``toolkit_core.create("pgd", eps=8/255, alpha=2/255, steps=10)`` (needs the ``pgd`` plugin)."""
    from ..catalog import create

    try:
        return create("pgd", **DEFAULT_ATTACK)
    except Exception as exc:  # the pgd plugin is not installed, or failed to load
        raise RuntimeError(
            "this defense needs an attack: pass attack=toolkit_core.create('pgd', ...) (or any Attack "
            f"object), or install the torchtrust-pgd plugin for the default one ({exc})"
        ) from exc


def resolve_attack(attack):
    """An Attack object, a registered attack name, ``(name, params)``, ``{"name": ..., **params}``, or
    ``None`` (the default PGD, created now); read by :func:`toolkit_core.catalog.resolve`."""
    from ..catalog import resolve

    if attack is None:
        return default_attack()
    try:
        return resolve(attack, kind="attack")
    except TypeError as exc:
        raise TypeError(f"attack must be a toolkit_core Attack object (e.g. toolkit_core.create('pgd', eps=0.1)), "
                        f"a registered attack name or None: {exc}") from None


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

    Holds ``attack`` (an :class:`~toolkit_core.methods.Attack`, or ``None`` for the default PGD,
    created on first access), shows it in ``repr``, and gives the contract checks a cheap attack.
    Subclasses call ``self._set_attack(attack)`` in ``__init__``.
    """

    def _set_attack(self, attack) -> None:
        from ..methods import Attack

        if attack is not None and not isinstance(attack, Attack):
            raise TypeError(
                f"{self.name}: attack must be an Attack object such as create('pgd', ...), got {attack!r}"
            )
        self._attack = attack

    @classmethod
    def contract_params(cls) -> dict:
        from ..catalog import create

        return {"attack": create("pgd", eps=0.1, alpha=0.05, steps=2)}

    def __repr__(self) -> str:
        return repr_with_attack(self, self._attack)

    @property
    def attack(self):
        """The attack used to craft ``x_adv`` (the default PGD is created on first access)."""
        if self._attack is None:
            self._attack = resolve_attack(None)
        return self._attack

    def loss(self, model, x, y):
        """``objective(model, x, x_adv, y)`` with ``x_adv`` crafted by :attr:`attack` on the model in
        eval mode (:func:`craft`); subclasses define ``objective`` and may override this."""
        return self.objective(model, x, craft(self.attack, model, x, y), y)
