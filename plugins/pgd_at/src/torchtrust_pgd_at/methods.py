"""PGD adversarial training (Madry, Makelov, Schmidt, Tsipras & Vladu 2018, arXiv:1706.06083)."""

from __future__ import annotations

import torch.nn.functional as F

from toolkit_core.methods import Attack
from toolkit_core.training import AdversarialDefense, accuracy, craft, eval_logits


class PGDAT(AdversarialDefense):
    """Adversarial training on the worst case found by an attack: ``min_theta E max_delta CE(f(x+delta), y)``.

    Per batch, ``x_adv = attack(model, x, y)`` is crafted with the model in eval mode (the inner
    maximization), then the model is trained in train mode on::

        L = 1/B sum_i CE(f(x_adv_i), y_i)

    ``attack``: any Attack object, e.g. ``create("pgd", eps=8/255, alpha=2/255, steps=10)`` (required
    for training; an experiment passes its training attack). ``track_clean``: also report the clean
    accuracy of the batch (one extra forward pass without gradients, in eval mode so BatchNorm statistics
    are not touched).
    """

    name = "pgd_at"
    summary = "PGD adversarial training: cross-entropy on adversarial examples from the inner maximization."
    citation = "arXiv:1706.06083"

    def __init__(self, attack: Attack | None = None, track_clean: bool = True):
        self._set_attack(attack)
        self.track_clean = bool(track_clean)


    def objective(self, model, x, x_adv, y):
        """``(loss, logs)`` for given adversarial examples: ``CE(f(x_adv), y)``."""
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        logs = {"loss": float(loss.detach()), "adv_acc": float((logits.detach().argmax(1) == y).float().mean())}
        return loss, logs

    def loss(self, model, x, y):
        x_adv = craft(self.attack, model, x, y)
        loss, logs = self.objective(model, x, x_adv, y)
        if self.track_clean:
            logs["clean_acc"] = accuracy(eval_logits(model, x), y)
        return loss, logs
