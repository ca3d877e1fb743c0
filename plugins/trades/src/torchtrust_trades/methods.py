"""TRADES: trading off clean accuracy and robustness (Zhang et al. 2019, arXiv:1901.08573)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from toolkit_core.methods import Attack
from toolkit_core.modelstate import preserved
from toolkit_core.training import AdversarialDefense, craft, unwrap_model


def trades_kl(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """``1/B sum_i KL(softmax(z_i) || softmax(z'_i)) = 1/B sum_i sum_k p_ik (log p_ik - log q_ik)``."""
    return F.kl_div(F.log_softmax(z_adv, dim=1), F.log_softmax(z, dim=1), reduction="batchmean", log_target=True)


class TRADES(AdversarialDefense):
    """TRADES: clean cross-entropy plus ``beta`` times the KL divergence to an adversarial neighbour.

    ::

        L = 1/B sum_i CE(f(x_i), y_i) + beta * 1/B sum_i KL( softmax f(x_i) || softmax f(x'_i) )

        x' = argmax_{x' in B(x, eps) and [0,1]}  KL( softmax f(x) || softmax f(x') ),

    found (model in eval mode, parameters frozen) by ``steps`` signed-gradient ascent steps of size
    ``alpha`` (L-inf; normalized-gradient steps for L2), each followed by projection onto the ball and
    clipping to [0, 1], starting at ``x + init_std * N(0, 1)`` (``init_std = 0.001`` as in the paper).
    The budget ``(eps, alpha, steps, norm)`` is read from ``attack`` (required for training, e.g.
    ``create("pgd", eps=8/255, alpha=2/255, steps=10)``; any attack with these attributes works).
    ``inner="attack"`` instead uses the attack object itself (its own objective, e.g. cross-entropy)
    to produce ``x'`` -- a variant, not the paper's. ``beta``: the trade-off (paper: 6).
    Clean and adversarial inputs go through the model in one forward pass of the concatenated batch.
    """

    name = "trades"
    summary = "TRADES: CE(f(x), y) + beta * KL(f(x) || f(x')) with x' maximizing the KL in the eps-ball."
    citation = "arXiv:1901.08573"

    def __init__(
        self,
        attack: Attack | None = None,
        beta: float = 6.0,
        inner: Literal["kl", "attack"] = "kl",
        init_std: float = 0.001,
    ):
        if not beta >= 0:
            raise ValueError(f"trades: beta must be >= 0, got {beta!r}")
        if inner not in ("kl", "attack"):
            raise ValueError(f"trades: inner must be 'kl' (the paper) or 'attack', got {inner!r}")
        if not init_std >= 0:
            raise ValueError(f"trades: init_std must be >= 0, got {init_std!r}")
        self._set_attack(attack)
        self.beta = float(beta)
        self.inner = inner
        self.init_std = float(init_std)


    def _budget(self) -> tuple[float, float, int, str]:
        a = self.attack
        missing = [k for k in ("eps", "alpha", "steps") if not hasattr(a, k)]
        if missing:
            raise ValueError(
                f"trades: inner='kl' reads eps, alpha and steps from the attack, but {a!r} has no "
                f"{', '.join(missing)}; pass a PGD-like attack or use inner='attack'"
            )
        norm = str(getattr(a, "norm", "linf")).lower()
        if norm not in ("linf", "l2"):
            raise ValueError(f"trades: unsupported norm {norm!r} (use 'linf' or 'l2')")
        return float(a.eps), float(a.alpha), int(a.steps), norm

    def maximize_kl(self, model, x: torch.Tensor) -> torch.Tensor:
        """The inner maximization: ``x'`` in ``B(x, eps)`` and [0, 1] with large ``KL(f(x) || f(x'))``."""
        eps, alpha, steps, norm = self._budget()
        base = unwrap_model(model)
        x = x.detach()
        with preserved(base, mode=False, freeze=True):
            with torch.no_grad():
                log_p = F.log_softmax(base(x), dim=1)
            x_adv = self._project(x + self.init_std * torch.randn_like(x), x, eps, norm)
            for _ in range(steps):
                x_adv.requires_grad_(True)
                with torch.enable_grad():
                    kl = F.kl_div(F.log_softmax(base(x_adv), dim=1), log_p, reduction="sum", log_target=True)
                    (grad,) = torch.autograd.grad(kl, x_adv)
                with torch.no_grad():
                    if norm == "linf":
                        step = alpha * grad.sign()
                    else:
                        g = grad.flatten(1)
                        step = (alpha * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(grad)
                    x_adv = self._project(x_adv.detach() + step, x, eps, norm)
        return x_adv.detach()

    @staticmethod
    def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
        delta = x_adv - x
        if norm == "linf":
            delta = delta.clamp(-eps, eps)
        else:
            n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            delta = delta * (eps / n).clamp(max=1.0).view(-1, *([1] * (x.dim() - 1)))
        return (x + delta).clamp(0.0, 1.0)

    def objective(self, model, x, x_adv, y):
        """``(loss, logs)`` for a given ``x'`` (the formula above; no inner maximization is run)."""
        logits = model(torch.cat([x, x_adv]))
        z, z_adv = logits[: len(x)], logits[len(x):]
        ce = F.cross_entropy(z, y)
        kl = trades_kl(z, z_adv)
        loss = ce + self.beta * kl
        with torch.no_grad():
            logs = {
                "loss": float(loss.detach()), "ce": float(ce.detach()), "kl": float(kl.detach()),
                "clean_acc": float((z.argmax(1) == y).float().mean()),
                "adv_acc": float((z_adv.argmax(1) == y).float().mean()),
            }
        return loss, logs

    def loss(self, model, x, y):
        x_adv = self.maximize_kl(model, x) if self.inner == "kl" else craft(self.attack, model, x, y)
        return self.objective(model, x, x_adv, y)
