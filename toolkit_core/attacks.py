"""Shared machinery of attacks: input validation and the guarded call every attack goes through."""

from __future__ import annotations

import torch
from torch import nn

from .modelstate import check_model, guarded, preserved
from .precision import Float32Logits, active_autocast


def check_attack_inputs(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``x``: float tensor (B, ...) in [0, 1]; ``y``: (B,) integer class indices."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (B, ...), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"attack inputs must lie in [0, 1] (normalization belongs inside the model), got values in "
            f"[{lo:.4g}, {hi:.4g}]"
        )
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a tensor of class indices, got {type(y).__name__}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    if (y < 0).any():
        raise ValueError("y holds negative class indices")
    return x, y.to(x.device).long()


def check_classes(logits: torch.Tensor, y: torch.Tensor) -> None:
    """Raise if a label is not a valid class of ``logits`` (call after the attack's first forward)."""
    if int(y.max()) >= logits.shape[1]:
        raise ValueError(f"y holds class {int(y.max())} but the model has {logits.shape[1]} classes")


class _CopiedInputs(nn.Module):
    """The folded copy, computing on a copy of its input like the guarded model does."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.clone())


def run_attack(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               batch_size: int | None = None) -> torch.Tensor:
    """Validate, run ``attack.perturb`` in eval mode with frozen parameters, restore the model.

    ``x`` and ``y`` come back unchanged (the model computes on copies); ``perturb`` runs on chunks of
    ``batch_size`` samples (``None``: sized to the device, :mod:`toolkit_core.chunking`), on
    :func:`toolkit_core.folding.fold_batchnorm` of the model (conv -> BatchNorm pairs folded in eval
    mode, the same function; skipped when the attack's ``fold_bn`` attribute is false).

    Under autocast (:func:`toolkit_core.precision.autocast`, e.g. ``evaluate_robustness(precision="bf16")``)
    the model's forward passes run in low precision and its logits reach ``perturb`` as float32
    (:class:`~toolkit_core.precision.Float32Logits`); ``x``, the perturbation and the input gradient
    stay float32.
    """
    from .chunking import chunks
    from .folding import fold_batchnorm

    check_model(model)
    x, y = check_attack_inputs(x, y)
    folded = model
    if getattr(attack, "fold_bn", True):
        # every attack differentiates through the BatchNorm-folded copy (the same function); traced in
        # eval mode before the guard's own hooks are installed (any hook disables folding)
        with preserved(model, mode=False):
            folded = fold_batchnorm(model)
    with guarded(model, (x,), mode=False, freeze=True):
        target = model if folded is model else _CopiedInputs(folded)
        if active_autocast(x.device) is not None:
            target = Float32Logits(target)  # mixed precision: the attack's loss and margins in float32
        parts = [attack.perturb(target, xc.detach(), yc).detach() for xc, yc in chunks(x, y, batch_size)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class TargetedBudget:
    """Mixin giving a targeted attack (parameters ``eps``, ``steps``, ``n_target_classes``, ``seed``) its
    experiment settings: 50 iterations on the 9 runner-up classes at the threat radius ``scale.eps``
    (AutoAttack's targeted setting, arXiv:2003.01690; quick: 10 iterations on 3), seed 0; contract
    checks with 3 steps on 2 targets. List it before the attack's base: ``class FAB(TargetedBudget, Attack)``."""

    @classmethod
    def contract_params(cls) -> dict:
        return {"steps": 3, "n_target_classes": 2, "seed": 0}

    @classmethod
    def experiment_variants(cls, scale) -> list[dict]:
        return [{"eps": scale.eps, "steps": 10 if scale.quick else 50, "n_target_classes": 3 if scale.quick else 9,
                 "seed": 0}]
