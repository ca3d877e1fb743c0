"""Adaptive smoothing: an input-dependent mixture of a standard and a robust classifier (our reading of
Bai et al., "Improving the Accuracy-Robustness Trade-Off of Classifiers via Adaptive Smoothing",
arXiv:2301.12554)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from toolkit_core.training.adversarial import AdversarialDefense, craft, unwrap_model

TINY = 1e-12


class MixingNetwork(nn.Module):
    """``a(x) = sigmoid(net(x))``: two small conv layers, global pooling, a linear score (the detector)."""

    def __init__(self, in_channels: int = 1, width: int = 8):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * width, 1),
        )

    def forward(self, x):
        return torch.sigmoid(self.net(x))[:, 0]


class MixedClassifier(nn.Module):
    """``log p(x)`` with ``p(x) = (1 - a(x)) softmax(g(x)) + a(x) softmax(h(x))``.

    ``g``: the standard classifier, ``h``: the robust one (copies; frozen and always in eval mode),
    ``a``: a :class:`MixingNetwork` (trainable). ``log p`` has the argmax of the mixed probabilities
    and is differentiable end to end, so attacks (AutoAttack) see the whole mixture, mixer included.
    ``alpha(x)`` returns ``a(x)``.
    """

    def __init__(self, standard: nn.Module, robust: nn.Module, mixer: nn.Module | None = None,
                 in_channels: int = 1):
        super().__init__()
        self.standard = copy.deepcopy(standard).eval()
        self.robust = copy.deepcopy(robust).eval()
        for p in [*self.standard.parameters(), *self.robust.parameters()]:
            p.requires_grad_(False)
        self.mixer = mixer if mixer is not None else MixingNetwork(in_channels)

    def train(self, mode: bool = True):
        super().train(mode)
        self.standard.eval()
        self.robust.eval()
        return self

    def alpha(self, x):
        return self.mixer(x)

    def forward(self, x):
        a = self.mixer(x)[:, None]
        p = (1 - a) * F.softmax(self.standard(x), 1) + a * F.softmax(self.robust(x), 1)
        return p.clamp_min(TINY).log()


class AdaptiveSmoothing(AdversarialDefense):
    """Train the mixing network of a :class:`MixedClassifier` (our reading of the abstract).

    The abstract: the mixture of a standard and a robust classifier's output probabilities improves the
    accuracy-robustness trade-off, and "an adversarial input detector" is adapted "into a mixing network
    that adaptively adjusts the mixture". Per batch, with ``x_adv = attack(mixed, x, y)`` (crafted
    against the whole mixture, in eval mode)::

        L = 1/2 [CE(m(x), y) + CE(m(x_adv), y)]
            + detector_weight * 1/2 [BCE(a(x), 0) + BCE(a(x_adv), 1)]

    so the mixer learns to hand adversarial inputs to the robust classifier and clean ones to the
    accurate standard classifier, and the mixture's own accuracy is optimized on both. Only the mixer
    is trained (the bases are frozen copies).

    ``model`` should be a :class:`MixedClassifier` built from two trained classifiers. A plain
    classifier (no mixer) gets the first term only, ``1/2 [CE(f(x), y) + CE(f(x_adv), y)]``: the
    step that trains a base classifier on clean and adversarial inputs. The default experiment, which
    trains one plain network per defense, leaves this defense out; ``benchmarks/adaptive_smoothing.py``
    builds the mixture and evaluates it with AutoAttack.
    """

    name = "adaptive_smoothing"
    summary = "Adaptive smoothing: a mixing network weights a standard and a robust classifier by the input."
    citation = "arXiv:2301.12554"

    @classmethod
    def experiment_variants(cls, scale) -> list[dict]:
        """None: the default experiment trains single networks, and this defense mixes two trained
        classifiers (``benchmarks/adaptive_smoothing.py`` builds and evaluates the mixture)."""
        return []

    def __init__(self, attack=None, detector_weight: float = 1.0):
        self._set_attack(attack)
        if not isinstance(detector_weight, (int, float)) or isinstance(detector_weight, bool) or detector_weight < 0:
            raise ValueError(f"adaptive_smoothing: detector_weight must be a number >= 0, got {detector_weight!r}")
        self.detector_weight = float(detector_weight)

    def loss(self, model, x, y):
        mixed = unwrap_model(model)
        x_adv = craft(self.attack, model, x, y)
        if not isinstance(mixed, MixedClassifier):  # a plain classifier: the mixture is the model itself
            logits = model(torch.cat([x, x_adv]))
            loss = F.cross_entropy(logits, torch.cat([y, y]))
            return loss, {"loss": float(loss.detach())}
        logits = model(torch.cat([x, x_adv]))
        ce = F.cross_entropy(logits, torch.cat([y, y]))
        a = mixed.alpha(torch.cat([x, x_adv]))
        target = torch.cat([torch.zeros_like(y), torch.ones_like(y)]).to(a.dtype)
        det = F.binary_cross_entropy(a.clamp(TINY, 1 - TINY), target)
        loss = ce + self.detector_weight * det
        n = len(y)
        with torch.no_grad():
            pred = logits.argmax(1)
            logs = {"loss": float(loss.detach()), "ce": float(ce.detach()), "detector": float(det.detach()),
                    "alpha_clean": float(a[:n].mean()), "alpha_adv": float(a[n:].mean()),
                    "clean_acc": float((pred[:n] == y).float().mean()),
                    "adv_acc": float((pred[n:] == y).float().mean())}
        return loss, logs
