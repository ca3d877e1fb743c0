"""Helpers for plugin authors' tests.

* :func:`check_method` -- the contract every method must meet, by kind, asserting numbers (shapes,
  bounds, finiteness, an unchanged model). ``tests/test_contract.py`` runs it for every registered
  method; call it from your plugin's own tests too.
* :func:`check_kernel` -- run a kernel's Triton implementation under ``TRITON_INTERPRET=1`` (in a
  subprocess, so the interpreter flag never leaks) on random CPU inputs and compare with the reference.
* :class:`ModelSnapshot` -- assert that a model came back bit-for-bit unchanged.
* :func:`with_plugin_on_path` -- make an entry point discoverable without installing anything.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .kinds import get_kind
from .methods import BASES, Method, MethodInfo, describe
from .modelstate import ModelSnapshot

__all__ = ["ModelSnapshot", "check_kernel", "check_method", "contract_model", "digits_batch", "small_mlp",
           "with_plugin_on_path"]


# --------------------------------------------------------------------------- contract checks


def contract_model(seed: int = 0, bias: bool = True) -> torch.nn.Module:
    """A small seeded digits CNN (16x16 inputs, 10 classes) used by the contract checks."""
    from .models import DigitsCNN

    torch.manual_seed(seed)
    return DigitsCNN(size=16, width=4, hidden=16, bias=bias).eval()


def small_mlp(bias: bool = True, seed: int = 3) -> torch.nn.Module:
    """``Flatten -> Linear(6, 5) -> ReLU -> Linear(5, 4) -> ReLU -> Linear(4, 3)``, initialized after
    ``torch.manual_seed(seed)``: small enough to evaluate a weight-based measure by hand."""
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=bias), nn.ReLU(), nn.Linear(5, 4, bias=bias),
                         nn.ReLU(), nn.Linear(4, 3, bias=bias))


def digits_batch(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded digits (16x16, in [0, 1]) and their labels, drawn from the whole bundled set."""
    from .data import load_digits

    ds = load_digits(16, "all")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return ds.tensors[0][idx], ds.tensors[1][idx]


def _contract_batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _instantiate(method: str | type | Method, params: dict[str, Any]) -> tuple[Method, MethodInfo]:
    if isinstance(method, Method):
        return method, method.info
    if isinstance(method, str):
        from .catalog import create, get_info

        info = get_info(method)
        return create(method, **{**info.cls.contract_params(), **params}), info
    info = describe(method)
    from .methods import validate_params

    kwargs = {**method.contract_params(), **params}
    validate_params(info, kwargs)
    return method(**kwargs), info


def check_method(method: str | type | Method, **params: Any) -> Method:
    """Assert the contract of a method (a registered name, a class, or an instance).

    Checks that the :class:`MethodInfo` is well formed and, by kind, that the method runs on a small
    model and returns values of the promised shape, inside the promised bounds, finite, and that the
    model comes back unchanged. Returns the created method.
    """
    obj, info = _instantiate(method, params)
    assert info.kind in BASES, f"unknown kind {info.kind!r}"
    assert isinstance(obj, BASES[info.kind]), f"{info.name} is not a {BASES[info.kind].__name__}"
    assert info.summary and info.citation, f"{info.name} needs a summary and a citation"
    names = [p.name for p in info.parameters]
    assert len(set(names)) == len(names)
    from . import kernels

    for k in info.kernels:
        kernels.get(k)  # raises if the method names a kernel it never declared
    globals()[get_kind(info.kind).check](obj)  # the kind's contract check, named in the table of kinds
    return obj


def _check_attribution(method) -> None:
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x, y = _contract_batch()
    r = method(model, x, y)
    assert r.shape == x.shape, f"{method.name}: shape {tuple(r.shape)} != {tuple(x.shape)}"
    assert torch.isfinite(r).all(), f"{method.name}: non-finite attribution"
    assert r.abs().sum() > 0, f"{method.name}: attribution is all zeros"
    r_pred = method(model, x, None)
    assert r_pred.shape == x.shape
    snap.assert_unchanged(model)
    try:
        method(model, x, torch.full((len(x),), 99))
    except ValueError:
        pass
    else:
        raise AssertionError(f"{method.name}: a target out of range must raise ValueError")
    snap.assert_unchanged(model)


def _check_attack(attack) -> None:
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x, y = _contract_batch()
    x_adv = attack(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1, f"{attack.name}: output leaves [0, 1]"
    eps = getattr(attack, "eps", None)
    norm = str(getattr(attack, "norm", "linf")).lower()
    if isinstance(eps, (int, float)):
        delta = (x_adv - x).flatten(1)
        size = delta.abs().amax(1) if norm in ("linf", "inf") else delta.norm(dim=1)
        assert (size <= eps + 1e-5).all(), f"{attack.name}: perturbation {float(size.max())} > eps {eps}"
    snap.assert_unchanged(model)
    try:
        attack(model, x + 2.0, y)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{attack.name}: inputs outside [0, 1] must raise ValueError")


def _check_defense(defense) -> None:
    model = contract_model().train()
    x, y = _contract_batch()
    defense.start_epoch(0, 2)
    loss, logs = defense.loss(model, x, y)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, f"{defense.name}: loss must be a scalar"
    assert torch.isfinite(loss), f"{defense.name}: non-finite loss"
    assert isinstance(logs, dict) and all(isinstance(v, (int, float)) for v in logs.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0, f"{defense.name}: loss has no gradient"
    assert model.training, f"{defense.name}: the model must stay in train mode"


def _check_prior(prior) -> None:
    from .data import ring8

    x, _ = ring8(64, seed=0)
    prior.fit(x)
    dim = prior.dim
    assert isinstance(dim, int) and dim >= 1
    codes = torch.as_tensor(prior.codes)
    assert codes.shape == (64, dim), f"{prior.name}: codes shape {tuple(codes.shape)} != (64, {dim})"
    assert torch.isfinite(codes).all()
    z = prior.sample(10)
    assert z.shape == (10, dim) and torch.isfinite(z).all()


def _check_metric(metric) -> None:
    # a metric whose ``model`` is not a classifier (e.g. a generator) supplies its own inputs
    custom = getattr(type(metric), "contract_inputs", None)
    model, data = custom() if custom is not None else (contract_model(), _contract_batch(32))
    snap = ModelSnapshot.take(model)
    out = metric.compute(model, data)
    assert isinstance(out, dict) and out, f"{metric.name}: compute must return a non-empty dict"
    for k, v in out.items():
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{metric.name}: {k} is {v!r}"
        assert not math.isnan(v), f"{metric.name}: {k} is NaN"
        assert k in metric.higher_is_better, f"{metric.name}: {k} missing from higher_is_better"
    snap.assert_unchanged(model)



def _check_dataset(source) -> None:
    shape, classes, (low, high) = tuple(source.input_shape), int(source.num_classes), source.value_range
    assert classes >= 2 and low < high, f"{source.name}: num_classes >= 2 and value_range (low, high) with low < high"
    for split, loader in zip(("train", "test"), source.loaders(batch_size=16, seed=0)):
        x, y = next(iter(loader))
        assert x.shape[1:] == shape, f"{source.name}: {split} x has shape {tuple(x.shape)}, input_shape {shape}"
        assert x.is_floating_point() and torch.isfinite(x).all(), f"{source.name}: {split} x must be finite floats"
        assert bool(((x >= low) & (x <= high)).all()), f"{source.name}: {split} x outside value_range"
        assert y.shape == (len(x),) and not y.is_floating_point(), f"{source.name}: {split} y must be class indices"
        assert bool(((y >= 0) & (y < classes)).all()), f"{source.name}: {split} y outside 0..{classes - 1}"
    again = next(iter(source.loaders(batch_size=16, seed=0)[1]))[0]
    assert torch.equal(again, next(iter(source.loaders(batch_size=16, seed=0)[1]))[0]), (
        f"{source.name}: the same seed must give the same data")
def _check_certifier(certifier) -> None:
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x, _ = _contract_batch()
    pred = certifier.predict(model, x)
    assert isinstance(pred, torch.Tensor) and pred.shape == (len(x),), f"{certifier.name}: predict shape"
    assert not pred.is_floating_point() and bool(((pred >= -1) & (pred < 10)).all())
    out = certifier.certify(model, x)
    assert isinstance(out, tuple) and len(out) == 2, f"{certifier.name}: certify must return (prediction, radius)"
    cpred, radius = out
    assert cpred.shape == (len(x),) and radius.shape == (len(x),), f"{certifier.name}: certify shapes"
    assert not cpred.is_floating_point() and bool(((cpred >= -1) & (cpred < 10)).all())
    assert torch.isfinite(radius).all() and bool((radius >= 0).all()), f"{certifier.name}: radius must be >= 0"
    assert bool((radius[cpred == -1] == 0).all()), f"{certifier.name}: an abstention has radius 0"
    assert isinstance(type(certifier).norm, str), f"{certifier.name}: set the class attribute norm"
    snap.assert_unchanged(model)



def _check_detector(detector) -> None:
    model = contract_model()
    snap = ModelSnapshot.take(model)
    x, y = _contract_batch(32)
    x0 = x.clone()
    assert detector.fit(model, (x, y)) is detector, f"{detector.name}: fit must return self"
    s = detector.score(model, x)
    assert isinstance(s, torch.Tensor) and s.shape == (len(x),), f"{detector.name}: score must have shape (B,)"
    assert torch.isfinite(s).all(), f"{detector.name}: non-finite scores"
    assert torch.equal(x, x0), f"{detector.name}: the input tensor was modified"
    snap.assert_unchanged(model)

def _check_patch(patch) -> None:
    source, reference, target = contract_model(0), contract_model(1), contract_model(2)
    snaps = [ModelSnapshot.take(m) for m in (source, reference, target)]
    assert patch.extract(source, reference) is patch, f"{patch.name}: extract must return self"
    assert isinstance(getattr(patch, "delta", None), dict) and patch.delta, f"{patch.name}: extract must set delta"
    params = dict(target.named_parameters())
    for name, d in patch.delta.items():
        assert name in params and d.shape == params[name].shape, f"{patch.name}: delta[{name!r}] fits no parameter"
        assert torch.isfinite(d).all(), f"{patch.name}: delta[{name!r}] is not finite"
    zero = patch.apply(target, 0.0)
    assert zero is not target, f"{patch.name}: apply must return a copy"
    for k, v in target.state_dict().items():
        assert torch.equal(zero.state_dict()[k], v), f"{patch.name}: coefficient 0 changed {k}"
    one = patch.apply(target, 1.0)
    with torch.no_grad():
        out = one(_contract_batch(4)[0])
    assert torch.isfinite(out).all(), f"{patch.name}: the patched model gives non-finite outputs"
    for model, snap in zip((source, reference, target), snaps):
        snap.assert_unchanged(model)


# --------------------------------------------------------------------------- kernels

_KERNEL_SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    import torch
    from toolkit_core import kernels
    importlib.import_module(sys.argv[1])
    k = kernels.get(sys.argv[2])
    report = []
    for dname in json.loads(sys.argv[3]):
        dtype = getattr(torch, dname)
        atol, rtol = kernels.TOLERANCES[dtype]
        for args in k.examples(dtype, "cpu"):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            nonzero = all(bool((t != 0).any()) for t in tensors if t.numel())
            ref, tri = k.reference(*args), k.triton(*args)
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            tri = tri if isinstance(tri, (tuple, list)) else (tri,)
            errs = []
            for a, b in zip(ref, tri):
                ok = a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol)
                errs.append(float((a.double() - b.double()).abs().max()) if a.shape == b.shape else float("inf"))
                if not ok:
                    break
            report.append({"dtype": dname, "shapes": [list(t.shape) for t in tensors], "nonzero": nonzero,
                           "max_abs_err": max(errs), "ok": ok and len(ref) == len(tri)})
    print("REPORT" + json.dumps(report))
    """
)


def check_kernel(
    name: str,
    module: str,
    dtypes: tuple[str, ...] = ("float32",),
    timeout: float = 600,
) -> list[dict[str, Any]]:
    """Run kernel ``name`` (declared by importing ``module``) in Triton's interpreter and compare.

    Runs in a subprocess with ``TRITON_INTERPRET=1`` on the random CPU inputs of the kernel's
    ``examples``; asserts every output matches the reference within :data:`kernels.TOLERANCES` for
    its dtype, and that no example input is all zeros. Returns the per-example report.
    """
    env = {**os.environ, "TRITON_INTERPRET": "1", "TORCHTRUST_KERNELS": "triton"}
    proc = subprocess.run(
        [sys.executable, "-c", _KERNEL_SCRIPT, module, name, json.dumps(list(dtypes))],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"kernel check for {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    report = json.loads(lines[-1][len("REPORT"):])
    assert report, f"kernel {name} declares no examples to test"
    for row in report:
        assert row["nonzero"], f"{name}: example inputs must be random, not zeros: {row}"
        assert row["ok"], f"{name}: Triton differs from the reference: {row}"
    return report


# --------------------------------------------------------------------------- discovery without installing


@contextmanager
def with_plugin_on_path(
    entry_points: dict[str, str], distribution: str = "fake-plugin", version: str = "0.0.1",
    files: dict[str, str] | None = None,
) -> Iterator[Path]:
    """Put a temporary ``*.dist-info`` (and module ``files``) on ``sys.path``.

    ``entry_points`` maps entry-point names to module paths in the ``torchtrust.plugins`` group.
    Inside the block, :func:`importlib.metadata.entry_points` finds them exactly as if a distribution
    had been installed; nothing is installed.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[torchtrust.plugins]\n{eps}\n")
        for rel, text in (files or {}).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        sys.path.insert(0, str(root))
        try:
            yield root
        finally:
            sys.path.remove(str(root))
            for mod in [m for m, v in sys.modules.items() if str(root) in str(getattr(v, "__file__", "") or "")]:
                del sys.modules[mod]
