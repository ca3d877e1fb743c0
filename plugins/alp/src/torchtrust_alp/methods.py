"""Adversarial logit pairing (Kannan, Kurakin & Goodfellow 2018, arXiv:1803.06373)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from toolkit_core.methods import Attack
from toolkit_core.training import AdversarialDefense

from .kernels import weighted_pair_loss


class ALP(AdversarialDefense):
    """Adversarial logit pairing: mixed clean/adversarial cross-entropy plus a logit-pairing penalty.

    For a batch ``(x, y)`` of ``B`` samples and adversarial examples ``x_adv = attack(model, x, y)``
    (crafted with the model in eval mode), with logits ``z = f(x)``, ``z' = f(x_adv)``::

        L = 1/(2B) sum_i [CE(z_i, y_i) + CE(z'_i, y_i)]  +  lam * 1/B sum_i ||z_i - z'_i||_2^2

    i.e. the cross-entropy of the 50/50 clean + adversarial batch and the mean squared L2 distance
    between paired logits. Clean and adversarial halves go through the model in one forward pass
    (one mixed batch, as in the paper; BatchNorm statistics are those of the mixed batch).
    The pairing term runs through ``torchtrust_alp::weighted_pair_loss`` with ``w_i = lam``.

    ``attack``: any Attack object, e.g. ``create("pgd", eps=8/255, alpha=2/255, steps=10)`` (required
    for training; an experiment passes its training attack). ``lam``: the pairing weight (paper: 0.5).
    """

    name = "alp"
    summary = "Adversarial logit pairing: 50/50 clean+adversarial cross-entropy plus lambda * ||z(x) - z(x_adv)||^2."
    citation = "arXiv:1803.06373"
    kernels = ("torchtrust_alp::weighted_pair_loss",)

    def __init__(self, attack: Attack | None = None, lam: float = 0.5):
        if not lam >= 0:
            raise ValueError(f"alp: lam (the pairing weight) must be >= 0, got {lam!r}")
        self._set_attack(attack)
        self.lam = float(lam)


    def pairing_weights(self, z_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample pairing weights ``w_i``; ALP: ``lam`` for every sample."""
        return torch.full((len(y),), self.lam, dtype=z_adv.dtype, device=z_adv.device)

    def forward_pair(self, model, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor):
        """Logits of the clean and adversarial halves from one forward pass of the mixed batch."""
        logits = model(torch.cat([x, x_adv]))
        return logits[: len(x)], logits[len(x):]

    def objective(self, model, x, x_adv, y):
        """``(loss, logs)`` for given adversarial examples (the formula above; no attack is run)."""
        z, z_adv = self.forward_pair(model, x, x_adv, y)
        ce = 0.5 * (F.cross_entropy(z, y) + F.cross_entropy(z_adv, y))
        w = self.pairing_weights(z_adv.detach(), y)
        pair = weighted_pair_loss(z, z_adv, w)
        loss = ce + pair
        with torch.no_grad():
            logs = {
                "loss": float(loss.detach()), "ce": float(ce.detach()), "pair": float(pair.detach()),
                "clean_acc": float((z.argmax(1) == y).float().mean()),
                "adv_acc": float((z_adv.argmax(1) == y).float().mean()),
            }
        return loss, logs
