"""Hand the model back exactly as we got it.

:func:`preserved` is the one mechanism every engine uses: it records each module's train/eval mode,
each parameter's ``requires_grad`` flag and the hook dictionaries, and on exit -- normal or by an
exception -- restores modes and flags and removes every hook added meanwhile.
:class:`ModelSnapshot` additionally copies weights and buffers so tests can assert bit-for-bit equality.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without tensors)."""
    t = next(model.parameters(), None)
    if t is None:
        t = next(model.buffers(), None)
    return t.device if t is not None else torch.device("cpu")


def _hook_keys(model: nn.Module) -> dict[tuple[str, str], set]:
    keys = {}
    for mname, m in model.named_modules(remove_duplicate=False):
        for d in _HOOK_DICTS:
            keys[(mname, d)] = set(getattr(m, d, {}).keys())
    for pname, p in model.named_parameters(remove_duplicate=False):
        keys[(pname, "param")] = set((p._backward_hooks or {}).keys())
    return keys


@contextlib.contextmanager
def preserved(model: nn.Module, mode: bool | None = None, freeze: bool = False) -> Iterator[nn.Module]:
    """Context in which ``model`` may be switched and hooked; everything is restored on exit.

    ``mode``: ``False`` puts the model in eval mode (``True`` train mode) inside the block.
    ``freeze``: set ``requires_grad=False`` on every parameter inside the block.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    # one traversal; hook dictionaries are recorded by key (None when empty, the common case)
    modules = [(m, m.training, tuple(set(d) if (d := getattr(m, name, None)) else None for name in _HOOK_DICTS))
               for m in model.modules()]
    params = [(p, p.requires_grad, set(p._backward_hooks) if p._backward_hooks else None)
              for p in model.parameters()]
    # buffers change only in train mode (BatchNorm running statistics): copy them only then
    trains = mode is True or (mode is None and any(training for _, training, _ in modules))
    buffers = [(m, name, b, b.detach().clone()) for m in model.modules()
               for name, b in m._buffers.items() if b is not None] if trains else []
    try:
        if mode is not None and any(training != mode for _, training, _ in modules):
            model.train(mode)  # the model's own train() (some models override it)
        if freeze:
            for p, _, _ in params:
                p.requires_grad_(False)
        yield model
    finally:
        for m, training, hooks in modules:
            if m.training != training:
                m.training = training
            for name, before in zip(_HOOK_DICTS, hooks):
                _drop_new(getattr(m, name, None), before)
        for p, flag, before in params:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
            _drop_new(p._backward_hooks, before)
        if buffers:
            with torch.no_grad():
                for m, name, b, saved in buffers:
                    if m._buffers.get(name) is not b:  # replaced by a new tensor: put the original back
                        m._buffers[name] = b
                    if not torch.equal(b, saved):
                        b.copy_(saved)


def _drop_new(hooks: dict | None, before: set | None) -> None:
    """Remove the entries of ``hooks`` whose keys are not in ``before``."""
    if hooks:
        for k in [k for k in hooks if before is None or k not in before]:
            del hooks[k]


def check_model(model: object) -> nn.Module:
    """``model`` must be an ``nn.Module`` whose parameters hold data (not on the meta device)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    meta = next((n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta), None)
    if meta is not None:
        raise ValueError(
            f"the model's tensor '{meta}' is on the meta device (it has no values); materialize the model "
            "first, e.g. model.to_empty(device='cpu') and then model.load_state_dict(weights)"
        )
    return model


#: Module types whose train-mode forward is random (dropout) or depends on the batch (batch norm).
_TRAIN_MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm, nn.AlphaDropout)


def warn_if_train_mode(model: nn.Module, what: str) -> None:
    """Warn when a dropout or batch-norm layer is in train mode: the result is then random or batch-dependent."""
    culprit = next((n or type(m).__name__ for n, m in model.named_modules()
                    if m.training and isinstance(m, _TRAIN_MODE_SENSITIVE)
                    and getattr(m, "p", 1.0) != 0), None)
    if culprit is not None:
        warnings.warn(
            f"{what}: layer '{culprit}' of the model is in train mode, so the result is random (dropout) or "
            "depends on the other samples of the batch (batch norm); call model.eval() first",
            RuntimeWarning, stacklevel=3,
        )


def _copy_inputs(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the model computes on copies, so nothing it does in place reaches the caller."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def _check_output(module: nn.Module, args: tuple, output: object) -> None:
    if not isinstance(output, torch.Tensor):
        detail = f" with keys {sorted(output)}" if isinstance(output, dict) else ""
        raise TypeError(
            f"the model returned {type(output).__name__}{detail}, but this call needs a single tensor "
            "(logits of shape (B, C)); wrap the model so that forward returns only that tensor, e.g. "
            "nn.Sequential-style: lambda x: model(x)[0] inside a small nn.Module"
        )


#: Messages of PyTorch's own errors that mean "this input does not fit this model".
_INPUT_MISMATCH = ("shapes cannot be multiplied", "size mismatch", "Expected input", "expected input",
                   "Given groups", "must match the size", "expected scalar type", "should be the same",
                   "Expected 3D", "Expected 4D", "Expected 2D", "but got input of size", "not implemented for")


@contextlib.contextmanager
def guarded(model: nn.Module, inputs: tuple = (), mode: bool | None = None, freeze: bool = False,
            single_output: bool = True) -> Iterator[nn.Module]:
    """:func:`preserved`, plus: the caller's tensors stay unchanged and common mistakes get one clear line.

    Inside the block the model's forward receives copies of its tensor arguments (cost: one copy of
    the input per forward), so an in-place first layer (``ReLU(inplace=True)``) neither overwrites the
    caller's tensor nor trips autograd's "leaf Variable ... in-place" error. ``single_output``: a model
    whose forward returns a tuple or dict raises a TypeError saying what to do. A PyTorch error that
    means the input does not fit the model (wrong shape, wrong dtype) is re-raised as one ValueError
    naming the shapes of ``inputs``.
    """
    check_model(model)
    with preserved(model, mode=mode, freeze=freeze):
        model.register_forward_pre_hook(_copy_inputs)
        if single_output:
            model.register_forward_hook(_check_output)
        try:
            yield model
        except RuntimeError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not any(p in text for p in _INPUT_MISMATCH):
                raise
            shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs if isinstance(t, torch.Tensor))
            raise ValueError(
                f"the model cannot take an input of shape/dtype {shapes or '(unknown)'} ({text}); pass a batch "
                "shaped (B, ...) like the data the model was built for, as a float tensor on the model's device"
            ) from exc


@dataclass
class ModelSnapshot:
    """A full copy of what must not change: weights, buffers, flags, modes, hook counts."""

    tensors: dict[str, torch.Tensor]
    flags: dict[str, bool]
    modes: dict[str, bool]
    hooks: dict[tuple[str, str], set]

    @classmethod
    def take(cls, model: nn.Module) -> ModelSnapshot:
        return cls(
            tensors={k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
            flags={k: p.requires_grad for k, p in model.named_parameters()},
            modes={k: m.training for k, m in model.named_modules()},
            hooks=_hook_keys(model),
        )

    def differences(self, model: nn.Module) -> list[str]:
        """Human-readable list of everything that differs from the snapshot (empty when equal)."""
        other = ModelSnapshot.take(model)
        diffs = []
        if self.tensors.keys() != other.tensors.keys():
            diffs.append(f"state_dict keys changed: {sorted(self.tensors.keys() ^ other.tensors.keys())}")
        for k in self.tensors.keys() & other.tensors.keys():
            a, b = self.tensors[k], other.tensors[k]
            if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
                diffs.append(f"tensor '{k}' changed")
        for name, attr in (("requires_grad", "flags"), ("training mode", "modes"), ("hooks", "hooks")):
            before, after = getattr(self, attr), getattr(other, attr)
            for k in before.keys() | after.keys():
                if before.get(k) != after.get(k):
                    diffs.append(f"{name} of '{k}' changed: {before.get(k)} -> {after.get(k)}")
        return diffs

    def assert_unchanged(self, model: nn.Module) -> None:
        diffs = self.differences(model)
        if diffs:
            raise AssertionError("model changed: " + "; ".join(diffs[:10]))
