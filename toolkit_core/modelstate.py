"""Hand the model back exactly as we got it.

:func:`preserved` is the one mechanism every engine uses: it records each module's train/eval mode,
each parameter's ``requires_grad`` flag and the hook dictionaries, and on exit -- normal or by an
exception -- restores modes and flags and removes every hook added meanwhile.
:class:`ModelSnapshot` additionally copies weights and buffers so tests can assert bit-for-bit equality.
"""

from __future__ import annotations

import contextlib
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


def _drop_new(hooks: dict | None, before: set | None) -> None:
    """Remove the entries of ``hooks`` whose keys are not in ``before``."""
    if hooks:
        for k in [k for k in hooks if before is None or k not in before]:
            del hooks[k]


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
