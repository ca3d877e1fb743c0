"""Robust Weight Signatures (Cai, Zhang & Wang, ICML 2023, arXiv:2302.12480).

Only the abstract was available to us; docs/methods/rws.md states the operational reading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from toolkit_core.methods import WeightPatch


def shallow_layers(model: nn.Module) -> list[str]:
    """Names of the modules that hold parameters of their own, in registration (= shallow-to-deep) order."""
    return [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def _check_same_architecture(a: nn.Module, b: nn.Module, what: str) -> None:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    if pa.keys() != pb.keys():
        raise ValueError(f"rws: {what} have different parameters ({sorted(set(pa) ^ set(pb))[:5]} ...); the "
                         "signature needs two models of one architecture")
    for n, p in pa.items():
        if p.shape != pb[n].shape:
            raise ValueError(f"rws: parameter {n!r} has shape {tuple(p.shape)} in one model and "
                             f"{tuple(pb[n].shape)} in the other; the signature needs one architecture")


def layer_differences(robust: nn.Module, standard: nn.Module) -> dict[str, float]:
    """Per layer (module with parameters), the relative weight difference
    ``||theta_l^robust - theta_l^standard||_2 / ||theta_l^standard||_2`` over all its parameters: the paper's
    observation (i) is that it is largest in the shallow layers."""
    _check_same_architecture(robust, standard, "the robust and the standard model")
    ps = dict(standard.named_parameters())
    out = {}
    with torch.no_grad():
        for layer in shallow_layers(robust):
            module = robust.get_submodule(layer)
            num = den = 0.0
            for pname, p in module.named_parameters(recurse=False):
                q = ps[f"{layer}.{pname}" if layer else pname]
                num += float(((p.double() - q.double()) ** 2).sum())
                den += float((q.double() ** 2).sum())
            out[layer] = (num / den) ** 0.5 if den > 0 else float("inf")
    return out


class RobustWeightSignature(WeightPatch):
    """Robust Weight Signature: ``tau_l = theta_l^robust - theta_l^standard`` on the ``layers`` shallowest layers.

    ``extract(robust, standard)`` keeps, for each of the first ``layers`` modules with parameters
    (registration order, which is shallow to deep for sequential networks; or the modules named in
    ``modules``), the difference of their parameters (weights, and biases if ``include_bias``).
    ``apply(model, c)`` returns a copy of ``model`` with::

        theta_l' = theta_l + c * tau_l        for the signature's layers l
        theta_l' = theta_l                    for every other parameter and every buffer

    so ``c = 0`` gives the model back bit-identically, ``c = 1`` patches the full signature, and the
    patch is linear in ``c`` (it can be scaled, composed, and taken off with ``-c``). The models handed
    to ``extract`` and ``apply`` are never modified.
    """

    name = "rws"
    summary = "Robust Weight Signatures: robust-minus-standard shallow-layer weights, patched into a copy."
    citation = "arXiv:2302.12480"

    def __init__(self, layers: int = 2, include_bias: bool = True, modules: list[str] | None = None):
        if layers < 1:
            raise ValueError(f"rws: layers must be >= 1 (how many of the shallowest layers to patch), got {layers!r}")
        self.layers, self.include_bias = int(layers), bool(include_bias)
        self.modules = list(modules) if modules is not None else None
        self.delta: dict[str, torch.Tensor] | None = None  # type: ignore[assignment]

    def selected(self, model: nn.Module) -> list[str]:
        """The names of the modules whose parameters form the signature."""
        available = shallow_layers(model)
        if self.modules is not None:
            unknown = [m for m in self.modules if m not in available]
            if unknown:
                raise ValueError(f"rws: no module with parameters named {unknown}; the model has {available}")
            return list(self.modules)
        return available[: self.layers]

    def extract(self, source: nn.Module, reference: nn.Module) -> RobustWeightSignature:
        """``source`` = the robust model, ``reference`` = the standard model (same architecture)."""
        _check_same_architecture(source, reference, "the robust (source) and the standard (reference) model")
        pr = dict(reference.named_parameters())
        delta = {}
        with torch.no_grad():
            for layer in self.selected(source):
                for pname, p in source.get_submodule(layer).named_parameters(recurse=False):
                    if pname == "bias" and not self.include_bias:
                        continue
                    full = f"{layer}.{pname}" if layer else pname
                    delta[full] = (p.detach() - pr[full].detach()).clone()
        self.delta = delta
        return self

    def fraction(self, model: nn.Module) -> float:
        """Share of ``model``'s parameters the signature stores (the paper's point: it is small)."""
        if self.delta is None:
            raise RuntimeError("rws: call extract(robust, standard) first")
        return sum(d.numel() for d in self.delta.values()) / sum(p.numel() for p in model.parameters())


def coefficient_sweep(patch: WeightPatch, model: nn.Module, data: tuple[torch.Tensor, torch.Tensor],
                      coefficients: Sequence[float],
                      perturb: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                      ) -> list[dict[str, float]]:
    """For each coefficient ``c``: clean accuracy of ``patch.apply(model, c)`` on ``data = (x, y)`` and, with
    ``perturb(model, x, y) -> x'`` (an attack, or a corruption that ignores the model), its accuracy on
    ``x'`` crafted against the patched model (:meth:`WeightPatch.sweep`). ``model`` is not modified."""
    return patch.sweep(model, data, coefficients, perturb)
