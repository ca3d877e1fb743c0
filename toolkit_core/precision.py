"""Mixed precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast, where a method allows it.

Lower precision runs the matrix products and convolutions of the forward pass in bfloat16 or float16
under :func:`torch.autocast` (Micikevicius et al. 2018, "Mixed Precision Training", arXiv:1710.03740);
parameters, optimizer state, inputs and everything outside those operations stay float32. Where it applies:

* **training** (:func:`toolkit_core.fit`): forward pass and loss under autocast; with ``"fp16"`` a
  :class:`torch.amp.GradScaler` scales the loss so that small gradients do not flush to zero in
  float16 (``bf16`` has float32's exponent range and needs none). The model's weights stay float32.
* **attacks** (:func:`toolkit_core.attacks.run_attack` under :func:`autocast`): the model's forward
  passes run under autocast and its logits are cast back to float32 (:class:`Float32Logits`) before
  the attack's loss, so margins are compared in float32; the perturbation, the input and the gradient
  with respect to the input are float32 tensors (autocast casts a float32 input down inside each
  layer, and its backward casts the gradient back up).
* **evaluation and metrics** (:func:`toolkit_core.evaluate_robustness`, the metrics stage): forward
  passes under autocast.
* **attribution: never.** :func:`toolkit_core.attribution.run_attribution` switches autocast *off*
  (:func:`full_precision`) whatever the caller set: LRP's epsilon/zB/flat rules and DTD divide
  relevance by pre-activations ``z``, and RectGrad thresholds gradient percentiles; in bfloat16
  (8 bits of mantissa) ``z`` loses all but ~3 significant digits and ``R / z`` loses conservation.
  An experiment that asks for ``bf16`` runs its attribution stage in float32 and says so in the
  console and the report.

``"fp16"`` on a CPU is refused (:func:`check_precision`): it is emulated there (slower than float32)
and is meant for CUDA with a gradient scaler; use ``"bf16"`` on a CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["PRECISIONS", "Float32Logits", "active_autocast", "autocast", "check_precision", "full_precision",
           "grad_scaler", "low_precision_dtype"]

#: The precision names and the autocast dtype of each (``None``: float32, no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_ALIASES = {"float32": "fp32", "32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "16": "fp16"}


def check_precision(precision: str | None, device: torch.device | str | None = None) -> str:
    """The canonical name (``"fp32"``, ``"bf16"``, ``"fp16"``) of ``precision`` (``None``: ``"fp32"``).

    Raises ``ValueError`` for an unknown name, and for ``"fp16"`` on a CPU ``device``.
    """
    if precision is None:
        return "fp32"
    name = _ALIASES.get(str(precision).lower(), str(precision).lower()) if isinstance(precision, str) else None
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}, got {precision!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if name == "fp16" and dev.type == "cpu":
        raise ValueError(
            "precision 'fp16' needs a CUDA device: float16 is emulated on a CPU (slower than float32) and its "
            "gradient scaling is meant for GPUs; use precision 'bf16' on a CPU (or --device cuda)"
        )
    return name


def low_precision_dtype(precision: str | None) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (``None`` for ``"fp32"``)."""
    return PRECISIONS[check_precision(precision, "cuda")]


def _device_type(device: torch.device | str | None) -> str:
    return torch.device(device).type if device is not None else "cpu"


@contextlib.contextmanager
def autocast(precision: str | None, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the block under :func:`torch.autocast` for ``device``'s type at ``precision``.

    ``"fp32"`` (or ``None``) enters nothing: the block runs exactly as without this context.
    """
    name = check_precision(precision, device)
    dtype = PRECISIONS[name]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=_device_type(device), dtype=dtype):
        yield


def active_autocast(device: torch.device | str | None) -> torch.dtype | None:
    """The dtype autocast is enabled with for ``device``'s type here, or ``None`` when it is off."""
    kind = _device_type(device)
    if kind not in ("cpu", "cuda") or not torch.is_autocast_enabled(kind):
        return None
    return torch.get_autocast_dtype(kind)


@contextlib.contextmanager
def full_precision(device: torch.device | str | None = None) -> Iterator[None]:
    """Switch autocast off for ``device``'s type inside the block (a caller's autocast does not reach it)."""
    kind = _device_type(device)
    if kind not in ("cpu", "cuda") or not torch.is_autocast_enabled(kind):
        yield
        return
    with torch.autocast(device_type=kind, enabled=False):
        yield


class Float32Logits(nn.Module):
    """``inner(x)`` with its output cast to float32 (the forward pass keeps the caller's autocast).

    Attacks compute their losses and margins on these logits, so a bfloat16 forward pass does not
    round the margin ``z_y - max_{j != y} z_j`` to bfloat16's 8-bit mantissa.
    """

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out


def grad_scaler(precision: str | None, device: torch.device | str | None) -> torch.amp.GradScaler | None:
    """A :class:`torch.amp.GradScaler` for ``"fp16"`` on CUDA; ``None`` otherwise (float32 and bfloat16
    need no loss scaling)."""
    name = check_precision(precision, device)
    if name != "fp16":
        return None
    return torch.amp.GradScaler(_device_type(device))
