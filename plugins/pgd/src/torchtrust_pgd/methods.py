"""Projected gradient descent, L-inf and L2 (Madry et al. 2018, arXiv:1706.06083)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from toolkit_core import params
from toolkit_core.attacks import check_classes
from toolkit_core.folding import fold_batchnorm
from toolkit_core.methods import Attack, Scale

from .kernels import l2_step, linf_step


def _check_budget(name: str, eps: float, alpha: float, steps: int, restarts: int) -> None:
    params.number(name, "eps", eps, meaning="the radius of the threat ball")
    params.number(name, "alpha", alpha, strict=True, meaning="the step size")
    params.count(name, "steps", steps)
    params.count(name, "restarts", restarts)


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform random point of ``B(x, eps)`` (L-inf: uniform cube; L2: uniform in the ball), in [0, 1]."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + (2 * u - 1) * eps).clamp_(0.0, 1.0)
    b = x.shape[0]
    d = x[0].numel()
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype).reshape(b, -1)
    r = torch.rand(b, 1, generator=generator, device=x.device, dtype=x.dtype).pow_(1.0 / d)
    z.mul_(r * eps / z.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return (x + z.reshape(x.shape)).clamp_(0.0, 1.0)


def better(loss: torch.Tensor, wrong: torch.Tensor, best_loss: torch.Tensor, best_wrong: torch.Tensor) -> torch.Tensor:
    """Per-sample "is the new point a stronger attack": misclassified beats correct, then higher loss."""
    return (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))


class PGD(Attack):
    """Projected gradient descent on the cross-entropy (Madry et al. 2018).

    Starting from a uniform random point of the ball ``B(x0, eps)`` (``random_start``), repeat ``steps``
    times::

        L-inf: x <- clip_[0,1]( Proj_{B_inf(x0, eps)}( x + alpha * sign(grad_x CE(f(x), y)) ) )
        L2:    x <- clip_[0,1]( Proj_{B_2(x0, eps)}( x + alpha * g / ||g||_2 ) ),  g = grad_x CE(f(x), y)

    With ``restarts > 1`` the attack is run from several random starts and, per sample, the strongest
    result is kept (misclassified beats correctly classified; then the higher loss). ``seed`` makes
    the random start reproducible (``None``: the global torch RNG). Each step costs one forward and
    one input-gradient backward; parameters are frozen, so no weight gradients are computed, and with
    ``fold_bn`` (default) eval-mode BatchNorm layers are folded into the preceding convolutions of a
    traced copy of the forward (same function up to float rounding; the model itself is untouched).
    Defaults are CIFAR-like (``eps = 8/255``, ``alpha = 2/255``, 10 steps); MNIST-like is
    ``eps=0.3, alpha=0.01, steps=40``.
    """

    name = "pgd"
    summary = "Projected gradient descent (L-inf or L2) with random start and per-sample best restarts."
    citation = "arXiv:1706.06083"
    kernels = ("torchtrust_pgd::linf_step", "torchtrust_pgd::l2_step")

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        norm: Literal["linf", "l2"] = "linf",
        random_start: bool = True,
        restarts: int = 1,
        seed: int | None = None,
        fold_bn: bool = True,
    ):
        _check_budget("pgd", eps, alpha, steps, restarts)
        params.choice("pgd", "norm", norm, ("linf", "l2"))
        params.seed("pgd", seed)
        self.eps = float(eps)
        self.alpha = float(alpha)
        self.steps = steps
        self.norm = norm
        self.random_start = bool(random_start)
        self.restarts = restarts
        self.seed = seed
        self.fold_bn = bool(fold_bn)

    @classmethod
    def contract_params(cls) -> dict:
        return {"steps": 3, "seed": 0}

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """Evaluation: PGD-20 (quick: PGD-10) with step eps/4, one seeded restart."""
        return [{"eps": scale.eps, "alpha": scale.eps / 4, "steps": 10 if scale.quick else 20, "restarts": 1,
                 "seed": 0}]

    @classmethod
    def training_params(cls, scale: Scale) -> dict[str, Any]:
        """Inside adversarial training: PGD-5 with step eps/4 (quick: PGD-3, step eps/2.5)."""
        if scale.quick:
            return {"eps": scale.eps, "alpha": scale.eps / 2.5, "steps": 3}
        return {"eps": scale.eps, "alpha": scale.eps / 4, "steps": 5}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)

    def _run(self, model, x0: torch.Tensor, y: torch.Tensor, generator, check: bool) -> torch.Tensor:
        step = linf_step if self.norm == "linf" else l2_step
        x = random_start(x0, self.eps, self.norm, generator) if self.random_start else x0.clone()
        for k in range(self.steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x)
                if check and k == 0:
                    check_classes(logits, y)
                loss = F.cross_entropy(logits, y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x)
            x = step(x.detach(), grad, x0, self.alpha, self.eps)
        return x

    def perturb(self, model, x, y):
        if self.fold_bn:
            model = fold_batchnorm(model)
        generator = self._generator(x.device)
        best = self._run(model, x, y, generator, check=True)
        if self.restarts == 1:
            return best
        with torch.no_grad():
            logits = model(best)
            best_loss = F.cross_entropy(logits, y, reduction="none")
            best_wrong = logits.argmax(1) != y
        for _ in range(self.restarts - 1):
            cand = self._run(model, x, y, generator, check=False)
            with torch.no_grad():
                logits = model(cand)
                loss = F.cross_entropy(logits, y, reduction="none")
                wrong = logits.argmax(1) != y
                take = better(loss, wrong, best_loss, best_wrong)
                best[take] = cand[take]
                best_loss = torch.where(take, loss, best_loss)
                best_wrong = best_wrong | wrong
        return best
