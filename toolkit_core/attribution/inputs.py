"""Validate attribution inputs and resolve targets, with errors that say what to do."""

from __future__ import annotations

import torch
from torch import nn


def check_input(x: object, name: str = "x") -> torch.Tensor:
    """``x`` must be a floating tensor with a batch dimension, at least one sample, finite."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with "
            f"{name}.float() (and scale images to the range the model expects)"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{name} must have a batch dimension, shape (B, ...), got shape {tuple(x.shape)}; "
            f"use {name}.unsqueeze(0) for a single sample"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values; clean the input first")
    return x


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the model and check that it returns a (B, C) logits tensor."""
    out = model(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model returned {type(out).__name__}, but attribution needs a single (B, C) logits "
            "tensor; wrap the model so that forward returns only the logits"
        )
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"the model must return logits of shape (B, C) = ({x.shape[0]}, C), got {tuple(out.shape)}"
        )
    return out


def resolve_target(target: object, logits: torch.Tensor) -> torch.Tensor:
    """Turn ``target`` (None, int, list or tensor of class indices) into a (B,) long tensor."""
    b, c = logits.shape
    if target is None:
        return logits.detach().argmax(1)
    if isinstance(target, bool):
        raise TypeError("target must be a class index (int), a list or tensor of them, or None")
    if isinstance(target, int):
        t = torch.full((b,), target, dtype=torch.long, device=logits.device)
    elif isinstance(target, (list, tuple)):
        t = torch.as_tensor(target, device=logits.device)
    elif isinstance(target, torch.Tensor):
        t = target.to(logits.device)
    else:
        raise TypeError(
            f"target must be an int, a list or tensor of class indices, or None; got {type(target).__name__}"
        )
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    if t.dim() > 1:
        raise ValueError(
            f"target must be one class index per sample, shape ({b},), got shape {tuple(t.shape)}; "
            "for a (B, 1) tensor use target.squeeze(1)"
        )
    t = t.long().reshape(-1)
    if t.numel() == 1 and b > 1:
        t = t.expand(b).clone()
    if t.numel() != b:
        raise ValueError(f"target has {t.numel()} entries but the batch has {b} samples")
    if (t < 0).any() or (t >= c).any():
        raise ValueError(f"target values must lie in [0, {c - 1}] (the model has {c} classes), got {t.tolist()}")
    return t
