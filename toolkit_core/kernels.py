"""Declare an op once: a PyTorch reference plus an optional Triton kernel, dispatched by device.

Every op is registered with :mod:`torch.library` as a custom op, so autograd and ``torch.compile``
see one op whichever backend runs it. The reference implementation is the CPU path *and* the test
oracle; the Triton kernel is used for CUDA tensors (or everywhere under ``TRITON_INTERPRET=1`` when
forced). ``TORCHTRUST_KERNELS`` selects the backend:

* ``auto`` (default): Triton for CUDA tensors when a kernel exists and Triton imports, else reference;
* ``reference``: always the PyTorch reference;
* ``triton``: always the Triton kernel (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``).

Example (from the ``gbp`` plugin; a kernel exists only where it fuses real work, see the kernel
policy in docs/architecture.md)::

    def _guided(g: Tensor, mask: Tensor) -> Tensor:       # reference: plain PyTorch
        return g.clamp(min=0) * mask

    guided_relu_grad = kernels.declare(
        "torchtrust_gbp::guided_relu_grad",
        reference=_guided,
        triton="torchtrust_gbp.triton_kernels:guided_relu_grad",  # imported lazily
        examples=lambda dtype, device: [(torch.randn(4, 3, 8, 8, dtype=dtype, device=device),
                                         torch.rand(4, 3, 8, 8, device=device) > 0.5)],
    )
    out = guided_relu_grad(g, mask)   # dispatches on g.device

Kernels must return new tensors (never a view of an input): that is what ``torch.library`` requires.

Every call goes through ``torch.ops`` (about 20 us more than calling the implementation directly, on
the CPU). An eager shortcut that skipped it was deleted: on ResNet-50 (batch 4, 224x224, CPU) GBP and
LRP call their kernel 49 and 54 times per attribution, so the shortcut saved about 1 ms of ~3 s, within
the noise (docs/performance.md, "Kernel dispatch").
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import torch

ENV = "TORCHTRUST_KERNELS"
BACKENDS = ("auto", "reference", "triton")

#: Tolerances (atol, rtol) per dtype used when a Triton kernel is compared with its reference.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-8),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


def requested_backend() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{ENV}={value!r} is not valid; use one of {', '.join(BACKENDS)}")
    return value


@functools.cache
def triton_available() -> bool:
    """True when the ``triton`` package can be imported (it ships with CUDA builds of torch)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _load(obj: Callable | str | None) -> Callable | None:
    if obj is None or callable(obj):
        return obj
    module, _, attr = obj.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclasses.dataclass(eq=False)
class Kernel:
    """One declared op. Call it like a function; it dispatches through ``torch.ops``."""

    name: str
    reference: Callable
    triton_spec: Callable | str | None = None
    examples: Callable[[torch.dtype, str], list[tuple]] | None = None
    op: Any = None
    _triton: Callable | None = dataclasses.field(default=None, repr=False)

    @property
    def has_triton(self) -> bool:
        return self.triton_spec is not None

    @property
    def triton(self) -> Callable:
        if self._triton is None:
            if self.triton_spec is None:
                raise RuntimeError(f"kernel {self.name} has no Triton implementation")
            self._triton = _load(self.triton_spec)
        return self._triton

    def backend_for(self, device: torch.device | str = "cpu") -> str:
        """``"triton"`` or ``"reference"``: what a call on a tensor on ``device`` would run."""
        device = torch.device(device)
        want = requested_backend()
        if want == "reference" or not self.has_triton:
            return "reference"
        usable = triton_available() and (device.type == "cuda" or interpreting())
        if want == "triton":
            if not usable:
                raise RuntimeError(
                    f"{ENV}=triton but kernel {self.name} cannot run Triton on {device}: use CUDA "
                    "tensors, or set TRITON_INTERPRET=1 to run the kernel in Triton's interpreter"
                )
            return "triton"
        return "triton" if usable and device.type == "cuda" else "reference"

    def describe_backend(self, device: str = "cpu") -> str:
        try:
            return self.backend_for(device)
        except RuntimeError as exc:
            return f"unavailable ({exc})"

    def __call__(self, *args, **kwargs):
        return self.op(*args, **kwargs)

    def _dispatch(self, *args, **kwargs):
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
        fn = self.triton if self.backend_for(device) == "triton" else self.reference
        return fn(*args, **kwargs)


_KERNELS: dict[str, Kernel] = {}


def declare(
    name: str,
    *,
    reference: Callable,
    triton: Callable | str | None = None,
    fake: Callable | None = None,
    backward: Callable | None = None,
    setup_context: Callable | None = None,
    examples: Callable[[torch.dtype, str], list[tuple]] | None = None,
) -> Kernel:
    """Declare the op ``name`` ("namespace::op").

    ``reference``: the PyTorch implementation, with type hints (they define the op's schema).
    ``triton``: a callable with the same signature that launches the Triton kernel, or its
    ``"module:function"`` path (imported on first use, so importing a plugin never imports Triton).
    ``fake``: the shape function for meta/fake tensors (default: the reference, which must then be
    shape-polymorphic plain PyTorch). ``backward``/``setup_context``: autograd formula, as in
    :func:`torch.library.register_autograd`, for ops that are differentiated through.
    ``examples(dtype, device)``: random (never all-zero) inputs used by
    :func:`toolkit_core.testing.check_kernel` to compare the Triton kernel with the reference.
    Declaring the same name twice returns the first declaration.
    """
    if name in _KERNELS:
        return _KERNELS[name]
    if "::" not in name:
        raise ValueError(f"kernel name {name!r} must be 'namespace::op', e.g. 'torchtrust_gbp::mask'")
    kernel = Kernel(name=name, reference=reference, triton_spec=triton, examples=examples)
    schema = torch.library.infer_schema(reference, mutates_args=())

    def impl(*args, **kwargs):
        return kernel._dispatch(*args, **kwargs)

    op = torch.library.custom_op(name, impl, mutates_args=(), schema=schema)
    op.register_fake(fake or reference)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
    kernel.op = op
    _KERNELS[name] = kernel
    return kernel


def get(name: str) -> Kernel:
    """The declared kernel ``name``; import the plugin that declares it first."""
    try:
        return _KERNELS[name]
    except KeyError:
        raise KeyError(
            f"no kernel named {name!r} is declared; declared: {', '.join(sorted(_KERNELS)) or 'none'}"
        ) from None


def all_kernels() -> dict[str, Kernel]:
    return dict(_KERNELS)
