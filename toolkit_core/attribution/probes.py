"""Read and inject what flows backwards at a layer: the one mechanism of the engine and the analysis.

* :class:`Recorder` keeps, for named modules, a tensor of every forward call -- the module's output
  (``at="output"``: the engine's ``record=``, relevance ``R = z * c`` at a layer's output) or its first
  input (``at="input"``: the analysis measures, relevance at a layer's input ``a * c``) -- and the
  signal ``c = d(.)/d(tensor)`` that the backward pass sends to it (a tensor hook, so it works for the
  engine's rules and for any method that back-propagates with autograd).
* :class:`Injector` replaces the signal arriving at a module's output by a given one: the signal
  ``c`` itself (``kind="signal"``) or the relevance ``R``, converted to ``c = R / z`` with the output
  ``z`` of the forward pass (``kind="relevance"``; ``0`` where ``z = 0``). The engine, which owns the
  backward pass, starts it at the captured output with :meth:`Injector.seed`; around any other method
  the injector's backward pre-hook puts the same seed in place of the gradient that arrives there.

Both are context managers (hooks removed on exit) or can :meth:`attach` their hooks to a list of
handles the caller removes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["INPUT", "Recorder", "Injector"]

#: the name under which a :class:`Recorder` with ``root`` records the model input
INPUT = "<input>"


class _Probe:
    """Hooks as a context manager: :meth:`attach` registers them (subclasses), exit removes them."""

    _handles: list[Any]

    def attach(self, handles: list | None = None) -> list:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        self.attach()
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class Recorder(_Probe):
    """Record per forward call of each named module its output (or first input) and the signal that
    reaches that tensor in the backward pass.

    ``modules``: ``{name: module}``; ``at``: ``"output"`` or ``"input"``; ``root`` (with ``at="input"``):
    the model, whose input is recorded as :data:`INPUT`. Only tensors that require grad are recorded.
    A module called several times gets the keys ``name``, ``name:1``, ``name:2`` ... (:meth:`calls`);
    :attr:`acts` / :attr:`rels` give, per name, the last call whose tensor received a signal.
    """

    def __init__(self, modules: Mapping[str, nn.Module], at: str = "output", root: nn.Module | None = None):
        if at not in ("output", "input"):
            raise ValueError(f"at must be 'output' or 'input', got {at!r}")
        if root is not None and at != "input":
            raise ValueError("root= records the model input, so it needs at='input'")
        self.modules, self.at, self.root = dict(modules), at, root
        self._handles: list[Any] = []
        self.clear()

    def clear(self) -> None:
        self._calls: dict[str, int] = {}
        self._records: list[tuple[str, str, Tensor, dict]] = []

    def attach(self, handles: list | None = None) -> list:
        """Register the hooks; append their handles to ``handles`` (default: the recorder's own)."""
        handles = self._handles if handles is None else handles
        for name, m in self.modules.items():
            if self.at == "output":
                handles.append(m.register_forward_hook(self._output_hook(name)))
            else:
                handles.append(m.register_forward_pre_hook(self._input_hook(name)))
        if self.root is not None:
            handles.append(self.root.register_forward_pre_hook(self._input_hook(INPUT)))
        return handles

    def _keep(self, name: str, t: Any) -> None:
        if not isinstance(t, Tensor) or not t.requires_grad:
            return
        i = self._calls.get(name, 0)
        self._calls[name] = i + 1
        box: dict[str, Tensor] = {}
        self._records.append((name if i == 0 else f"{name}:{i}", name, t.detach().clone(), box))

        def grad_hook(g: Tensor | None) -> None:
            if g is not None:  # a rule that writes relevance directly (flat, zB at the input) sends nothing
                box["grad"] = g.detach().clone()

        t.register_hook(grad_hook)

    def _output_hook(self, name: str):
        def hook(_m, _args, out):
            self._keep(name, out)

        return hook

    def _input_hook(self, name: str):
        def hook(_m, args):
            if args:
                self._keep(name, args[0])

        return hook

    def calls(self) -> list[tuple[str, Tensor, Tensor | None]]:
        """``(key, recorded tensor, signal or None)`` per call, in forward order."""
        return [(key, value, box.get("grad")) for key, _, value, box in self._records]

    def _last(self) -> dict[str, tuple[Tensor, Tensor]]:
        out = {}
        for _, name, value, box in self._records:
            if "grad" in box:
                out[name] = (value, box["grad"])
        return out

    @property
    def acts(self) -> dict[str, Tensor]:
        """Per name: the recorded tensor of the last call whose tensor received a signal."""
        return {n: v for n, (v, _) in self._last().items()}

    @property
    def rels(self) -> dict[str, Tensor]:
        """Per name: the signal of the last call whose tensor received one."""
        return {n: g for n, (_, g) in self._last().items()}


class Injector(_Probe):
    """Replace the signal arriving at ``module``'s output in the backward pass.

    ``value``: the signal ``c`` (``kind="signal"``) or the relevance ``R`` (``kind="relevance"``, the
    signal is then ``R / z`` with ``z`` the module's output in the last forward call, 0 where ``z = 0``).
    As a context manager (or after :meth:`attach`) the injector captures the output of the first
    forward call (:attr:`output`) and, with ``replace_gradient=True``, puts :meth:`seed` in place of
    the gradient arriving there (a backward pre-hook; :attr:`fired` says whether it ran).
    """

    def __init__(self, module: nn.Module, value: Tensor, kind: str = "signal", replace_gradient: bool = True):
        if kind not in ("signal", "relevance"):
            raise ValueError(f"kind must be 'signal' or 'relevance', got {kind!r}")
        self.module, self.value, self.kind = module, value, kind
        self.replace_gradient = replace_gradient
        self.output: Tensor | None = None
        self.z: Tensor | None = None
        self.fired = False
        self._handles: list[Any] = []

    def attach(self, handles: list | None = None) -> list:
        handles = self._handles if handles is None else handles
        handles.append(self.module.register_forward_hook(self._forward_hook))
        if self.replace_gradient:
            handles.append(self.module.register_full_backward_pre_hook(self._backward_pre_hook))
        return handles

    def reset(self) -> None:
        """Forget the captured output (before running the model again)."""
        self.output = self.z = None
        self.fired = False

    def _forward_hook(self, _m, _args, out):
        if not isinstance(out, Tensor):
            return None
        if self.replace_gradient:
            self.z = out.detach()  # the last forward call's output
            return None
        if self.output is None:  # the backward pass starts here: the first call's output
            self.output, self.z = out, out.detach()
            return out.clone()  # later in-place ops (ReLU) must not rewrite the injection point
        return None

    def _backward_pre_hook(self, _m, grad_output):
        g = grad_output[0]
        seed = self.seed(g.dtype if g is not None else None)
        if g is not None and g.shape != seed.shape:
            raise ValueError(f"injected relevance has shape {tuple(seed.shape)} but the layer output has "
                             f"shape {tuple(g.shape)}")
        self.fired = True
        return (seed, *grad_output[1:])

    def seed(self, dtype: torch.dtype | None = None) -> Tensor:
        """The signal to start from at the module's output (after a forward call, for ``"relevance"``)."""
        z = self.z
        dtype = dtype or (z.dtype if z is not None else None)
        value = torch.as_tensor(self.value, dtype=dtype, device=None if z is None else z.device)
        if self.kind == "signal":
            return value
        if z is None or z.shape != value.shape:
            shape = None if z is None else tuple(z.shape)
            raise ValueError(f"cannot inject relevance: the layer output has shape {shape}, the relevance "
                             f"{tuple(value.shape)}")
        from .rules import stabilized_divide

        return stabilized_divide(value.to(z.dtype), z, 0.0)
