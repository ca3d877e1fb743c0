"""Iterative feature merging: the network feature complexity of a chain of layers.

Reading implemented (the paper's abstract: "Going Beyond Neural Network Feature Similarity: The Network
Feature Complexity and Its Interpretation Using Category Theory"): two features (channels) of a layer
are *functionally equivalent* when one is a positive multiple of the other on the data,
``z_j = s z_i`` with ``s > 0``. Behind a positively homogeneous activation (ReLU, LeakyReLU) and
per-channel pooling, ``phi(s z_i) = s phi(z_i)``, so feature ``j`` can be removed and its outgoing
weights added, scaled by ``s``, to feature ``i``'s in the next layer:

    W_next[:, i] <- W_next[:, i] + s * W_next[:, j],   then drop row j of the layer, column j of W_next

which leaves the network's function unchanged when the equivalence is exact. Iterative Feature
Merging (IFM) repeats this greedily. Candidates are found from the weights alone, as the paper's
data-agnostic pruning does: ``z_j = s z_i`` for every input exactly when channel ``j``'s incoming
weights and bias are ``s`` times channel ``i``'s, so pairs are tried in decreasing order of the cosine
similarity ``cos(v_i, v_j)`` of those vectors ``v = [w, b]``, with ``s = <v_i, v_j> / <v_i, v_i>`` (least
squares). A merge is kept only while the relative change of the network's output on probe inputs,
``||f_merged(x) - f(x)|| / ||f(x)||``, stays below ``tol``; the first rejected merge ends a layer. The
number of features that remain per layer is the network's *feature complexity*; the merged network is
a pruning of the original that needs no retraining (the probe inputs only bound the output change).

Supported models: those whose leaf modules run as a chain (each module consumes the previous one's
output), with merges between a ``Linear``/``Conv2d`` producer and the next ``Linear``/``Conv2d``
consumer when only ReLU, LeakyReLU, max/average pooling, dropout (eval) and ``Flatten`` run between
them. Other layers are left as they are and reported as not mergeable (e.g. a BatchNorm between two
convolutions changes each channel by its own affine map, so equivalence up to a scale is not kept).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor, nn

from toolkit_core.data import iterate_batches
from toolkit_core.features import Directions, device_of, require_data
from toolkit_core.methods import Metric, Scale
from toolkit_core.modelstate import preserved

__all__ = ["FeatureComplexity", "MergeReport", "merge_features"]

_PRODUCERS = (nn.Linear, nn.Conv2d)
#: Modules between a producer and its consumer through which a positive per-channel scale passes.
_PASS = (nn.ReLU, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
         nn.Dropout, nn.Flatten, nn.Identity)


@dataclasses.dataclass
class MergeReport:
    """What :func:`merge_features` did, per mergeable layer (module path -> count)."""

    original: dict[str, int]
    remaining: dict[str, int]
    output_change: float


def _chain(model: nn.Module, x: Tensor) -> list[tuple[str, nn.Module]]:
    """Leaf modules in execution order; raises unless each one consumes the previous one's output."""
    order: list[tuple[str, nn.Module, Tensor, Tensor]] = []
    handles = []
    for name, m in model.named_modules():
        if not list(m.children()):
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: order.append((name, mod, inp[0] if inp else None, out))))
    try:
        with torch.no_grad():
            final = model(x)
    finally:
        for h in handles:
            h.remove()
    for (_, _, _, out), (name, _, inp, _) in zip(order, order[1:]):
        if inp is not out:
            raise ValueError(
                f"feature_complexity needs a model whose leaf modules run as a chain; '{name}' does not take "
                "the previous module's output (a residual, a branch or a functional op in between). "
                "Merge such models block by block, or describe them as nn.Sequential."
            )
    if not order or order[-1][3] is not final:
        raise ValueError("feature_complexity: the model's output is not its last leaf module's output")
    return [(name, m) for name, m, _, _ in order]


def _pairs(chain: list[tuple[str, nn.Module]]) -> list[tuple[str, str]]:
    """(producer, consumer) module paths whose channels can be merged."""
    out = []
    for i, (name, m) in enumerate(chain):
        if not isinstance(m, _PRODUCERS):
            continue
        for name2, m2 in chain[i + 1:]:
            if isinstance(m2, _PRODUCERS):
                out.append((name, name2))
                break
            if not isinstance(m2, _PASS):
                break
    return out


def _channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _merge(producer: nn.Module, consumer: nn.Module, keep: int, drop: int, scale: float) -> None:
    """Fold channel ``drop`` (= ``scale`` x channel ``keep``) into ``keep`` and remove it, in place."""
    c = _channels(producer)
    rows = [k for k in range(c) if k != drop]
    w = consumer.weight.data
    if isinstance(consumer, nn.Linear) and w.shape[1] != c:  # a Flatten in between: blocks of features
        block = w.shape[1] // c
        w = w.view(w.shape[0], c, block)
    w[:, keep] += scale * w[:, drop]
    w = w[:, rows]
    consumer.weight = nn.Parameter(w.reshape(w.shape[0], -1) if isinstance(consumer, nn.Linear) else w.contiguous())
    if isinstance(consumer, nn.Linear):
        consumer.in_features = consumer.weight.shape[1]
    else:
        consumer.in_channels = len(rows)
    producer.weight = nn.Parameter(producer.weight.data[rows].clone())
    if producer.bias is not None:
        producer.bias = nn.Parameter(producer.bias.data[rows].clone())
    if isinstance(producer, nn.Linear):
        producer.out_features = len(rows)
    else:
        producer.out_channels = len(rows)


def _incoming(module: nn.Module) -> Tensor:
    """(channels, fan_in + 1) matrix: each output channel's incoming weights and its bias."""
    w = module.weight.detach().reshape(_channels(module), -1).double()
    b = module.bias.detach().double()[:, None] if module.bias is not None else w.new_zeros(len(w), 1)
    return torch.cat([w, b], 1)


def merge_features(model: nn.Module, x: Tensor, tol: float = 1e-3) -> tuple[nn.Module, MergeReport]:
    """Iterative feature merging of a copy of ``model`` on inputs ``x``; ``model`` is not touched.

    Returns the merged copy (eval mode) and a :class:`MergeReport`. See the module docstring.
    """
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    merged = copy.deepcopy(model).eval()
    modules = dict(merged.named_modules())
    pairs = _pairs(_chain(merged, x))
    with torch.no_grad():
        ref = merged(x).double()
    scale_ref = ref.norm().clamp_min(1e-30)
    original = {p: _channels(modules[p]) for p, _ in pairs}
    change = 0.0
    for pname, cname in pairs:
        producer = modules[pname]
        while _channels(producer) > 1:
            z = _incoming(producer)
            norms = z.norm(dim=1)
            zn = z / norms.clamp_min(1e-30)[:, None]
            cos = zn @ zn.T
            cos.fill_diagonal_(-2.0)
            cos[(norms == 0)[:, None] | (norms == 0)[None, :]] = -2.0
            i, j = divmod(int(cos.argmax()), cos.shape[1])
            scale = float((z[i] @ z[j]) / (z[i] @ z[i]))
            if cos[i, j] <= 0 or scale <= 0:
                break
            trial = copy.deepcopy(merged)
            tmods = dict(trial.named_modules())
            _merge(tmods[pname], tmods[cname], i, j, scale)
            with torch.no_grad():
                delta = float((trial(x).double() - ref).norm() / scale_ref)
            if delta >= tol:
                break
            merged, modules, change = trial, tmods, delta
            producer = modules[pname]
    remaining = {p: _channels(modules[p]) for p in original}
    return merged, MergeReport(original=original, remaining=remaining, output_change=change)


class FeatureComplexity(Metric):
    """Feature complexity: features per layer left after Iterative Feature Merging at tolerance ``tol``.

    Keys: ``complexity`` (remaining / original features over all mergeable layers), ``remaining/<layer>``
    and ``merged/<layer>`` per layer, ``output_change`` (relative output change of the merged network),
    ``accuracy`` and ``accuracy_merged`` on the data (the merged network is a pruning of the original).
    """

    name = "feature_complexity"
    summary = "Features per layer left after merging those equal up to a positive scale (iterative feature merging)."
    citation = ("Going Beyond Neural Network Feature Similarity: The Network Feature Complexity and Its "
                "Interpretation Using Category Theory (arXiv:2310.06756)")
    higher_is_better = Directions(complexity=False, remaining=False, merged=True, output_change=False,
                                  accuracy=True, accuracy_merged=True)
    definitions = {
        "complexity": "Share of the mergeable layers' features left after merging those equal up to a positive "
                      "scale (1 = nothing redundant).",
        "remaining": "Features left in one layer after iterative feature merging.",
        "merged": "Features of one layer merged into others.",
        "output_change": "Relative change ||f_merged(x) - f(x)|| / ||f(x)|| of the outputs on the probe inputs.",
        "accuracy": "Accuracy of the original model on the data.",
        "accuracy_merged": "Accuracy of the merged (pruned) model on the data.",
    }

    def __init__(self, tol: float = 1e-3, max_samples: int = 512):
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.tol = tol
        self.max_samples = max_samples

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict]:
        """Exact equivalences (tol 1e-3) and near ones (tol 0.1, where small trained CNNs do merge; see
        docs/results/seed-pool.md); a quick run: tol 0.1 on a 256-input probe."""
        if scale.quick:
            return [{"tol": 0.1, "max_samples": 256}]
        return [{}, {"tol": 0.1}]

    def compute(self, model, data) -> dict[str, float]:
        device = device_of(model)
        probe, n = [], 0
        for xb, _ in iterate_batches(data):
            probe.append(xb[: self.max_samples - n])
            n += len(probe[-1])
            if n >= self.max_samples:
                break
        require_data(len(probe), self.name)
        x = torch.cat(probe).to(device)
        with preserved(model, mode=False):
            merged, report = merge_features(model, x, self.tol)
            correct = [0, 0]
            total = 0
            with torch.no_grad():
                for xb, yb in iterate_batches(data):
                    xb, yb = xb.to(device), yb.to(device)
                    correct[0] += int((model(xb).argmax(1) == yb).sum())
                    correct[1] += int((merged(xb).argmax(1) == yb).sum())
                    total += len(yb)
        out = {
            "complexity": sum(report.remaining.values()) / max(sum(report.original.values()), 1),
            "output_change": report.output_change,
            "accuracy": correct[0] / total,
            "accuracy_merged": correct[1] / total,
        }
        for layer in report.original:
            out[f"remaining/{layer}"] = float(report.remaining[layer])
            out[f"merged/{layer}"] = float(report.original[layer] - report.remaining[layer])
        return out
