"""Fast gradient sign method (Goodfellow et al. 2015, arXiv:1412.6572)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from toolkit_core import params
from toolkit_core.attacks import check_classes
from toolkit_core.methods import Attack


class FGSM(Attack):
    """One signed-gradient step of size ``eps`` on the cross-entropy, clipped to the image range::

        x' = clip_[0,1]( x + eps * sign( grad_x CE(f(x), y) ) )

    Goodfellow, Shlens & Szegedy, "Explaining and harnessing adversarial examples", ICLR 2015.
    The result lies in the L-inf ball of radius ``eps`` around ``x`` and in [0, 1].
    """

    name = "fgsm"
    summary = "Fast gradient sign method: one L-inf step of size eps along the sign of the input gradient."
    citation = "arXiv:1412.6572"

    def __init__(self, eps: float = 8 / 255):
        self.eps = params.number("fgsm", "eps", eps, meaning="the L-inf radius")

    def perturb(self, model, x, y):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            check_classes(logits, y)
            loss = F.cross_entropy(logits, y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        return (x.detach() + self.eps * grad.sign()).clamp_(0.0, 1.0)
