"""Auto-PGD (Croce & Hein 2020, arXiv:2003.01690): APGD-CE and APGD-DLR, L-inf and L2."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from toolkit_core import params
from toolkit_core.attacks import TargetedBudget, check_classes
from toolkit_core.methods import Attack, Scale

TINY = 1e-12


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio, per sample: ``-(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3)``."""
    if logits.shape[1] < 3:
        raise ValueError(f"apgd: loss='dlr' needs at least 3 classes, the model has {logits.shape[1]}; use loss='ce'")
    z_sorted, order = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None])[:, 0]
    top_is_y = order[:, -1] == y
    z_other = torch.where(top_is_y, z_sorted[:, -2], z_sorted[:, -1])
    return -(z_y - z_other) / (z_sorted[:, -1] - z_sorted[:, -3] + TINY)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR, per sample: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    ``pi`` sorts the logits in decreasing order (Croce & Hein 2020, eq. 7). Maximizing it pushes the
    target logit ``z_t`` above the true one; the denominator makes it invariant to shifting and
    rescaling the logits. Needs at least 4 classes.
    """
    if logits.shape[1] < 4:
        raise ValueError(
            f"apgd_t: the targeted DLR loss needs at least 4 classes, the model has {logits.shape[1]}; use apgd"
        )
    z_sorted = logits.sort(dim=1).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + TINY)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator) -> torch.Tensor:
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + (2 * u - 1) * eps).clamp_(0.0, 1.0)
    b, d = x.shape[0], x[0].numel()
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype).reshape(b, -1)
    r = torch.rand(b, 1, generator=generator, device=x.device, dtype=x.dtype).pow_(1.0 / d)
    z.mul_(r * eps / z.norm(dim=1, keepdim=True).clamp_min(TINY))
    return (x + z.reshape(x.shape)).clamp_(0.0, 1.0)


class APGD(Attack):
    """Auto-PGD: PGD with momentum and an automatic step-size schedule (Croce & Hein, ICML 2020).

    With ``N = steps`` iterations, checkpoints ``w_j = ceil(p_j N)`` with ``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``. Starting from a random point of the ball
    with step ``eta = 2 eps``::

        z       = P(x_k + eta * s(grad f(x_k)))                     s = sign (L-inf) or g/||g||_2 (L2)
        x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))     a = momentum (1 at the first step)

    where ``P`` projects onto ``B(x0, eps)`` and clips to [0, 1], and ``f`` is the cross-entropy
    (``loss="ce"``, APGD-CE) or the DLR loss (``loss="dlr"``). At each checkpoint ``w_j``, per sample,
    the step size is halved and the iterate reset to the best point so far if (1) the loss increased
    in at most ``rho * (w_j - w_{j-1})`` of the steps since ``w_{j-1}`` (the AutoAttack reference
    code's ``<=``; the paper writes ``<``), or (2) the step size was not reduced at ``w_{j-1}`` and the
    best loss has not improved since. Per sample the strongest point seen in any iteration of any
    restart is returned: a misclassified point beats a correct one, then the higher loss wins.
    """

    name = "apgd"
    summary = "Auto-PGD (APGD-CE/DLR): momentum PGD with the checkpointed step-size schedule of AutoAttack."
    citation = "arXiv:2003.01690"

    def __init__(
        self,
        eps: float = 8 / 255,
        steps: int = 100,
        norm: Literal["linf", "l2"] = "linf",
        loss: Literal["ce", "dlr"] = "ce",
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        seed: int | None = None,
    ):
        params.number("apgd", "eps", eps, meaning="the radius of the threat ball")
        params.count("apgd", "steps", steps)
        params.count("apgd", "restarts", restarts)
        params.choice("apgd", "norm", norm, ("linf", "l2"))
        params.choice("apgd", "loss", loss, ("ce", "dlr"))
        if not 0 < rho <= 1:
            raise ValueError(f"apgd: rho must lie in (0, 1], got {rho!r}")
        if not 0 < momentum <= 1:
            raise ValueError(f"apgd: momentum must lie in (0, 1] (1 = no momentum), got {momentum!r}")
        params.seed("apgd", seed)
        self.eps = float(eps)
        self.steps = steps
        self.norm = norm
        self.loss = loss
        self.restarts = restarts
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.seed = seed

    @classmethod
    def contract_params(cls) -> dict:
        return {"steps": 5, "seed": 0}

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """Evaluation: 50 steps (quick: 20), seeded."""
        return [{"eps": scale.eps, "steps": 20 if scale.quick else 50, "seed": 0}]

    @staticmethod
    def checkpoints(steps: int) -> list[int]:
        """Iterations after which the step size is checked: ``w_j = ceil(p_j * steps)`` for ``j >= 1``.

        ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` while ``<= 1``
        (for 100 steps: 22, 41, 57, 70, 80, 87, 93, 99, as in the reference code).
        """
        p_prev, p = 0.0, 0.22
        out: list[int] = []
        while p <= 1.0 + 1e-9:
            w = math.ceil(p * steps - 1e-9)
            if w >= 1 and (not out or w > out[-1]):
                out.append(w)
            p_prev, p = p, p + max(p - p_prev - 0.03, 0.06)
        return out

    # ------------------------------------------------------------------ helpers

    def _per_sample_loss(self, logits, y, target):
        if target is not None:
            return targeted_dlr_loss(logits, y, target)
        return F.cross_entropy(logits, y, reduction="none") if self.loss == "ce" else dlr_loss(logits, y)

    def _loss_grad(self, model, x, y, check: bool, target=None):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            if check:
                check_classes(logits, y)
            per_sample = self._per_sample_loss(logits, y, target)
            (grad,) = torch.autograd.grad(per_sample.sum(), x)
        return per_sample.detach(), grad, logits.detach()

    def _project(self, v: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return torch.minimum(torch.maximum(v, x0 - self.eps), x0 + self.eps).clamp_(0.0, 1.0)
        b = v.shape[0]
        d = (v - x0).reshape(b, -1)
        scale = torch.clamp(self.eps / (d.norm(dim=1, keepdim=True) + TINY), max=1.0)
        return (x0 + (d * scale).reshape(v.shape)).clamp_(0.0, 1.0)

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return grad.sign()
        b = grad.shape[0]
        n = grad.reshape(b, -1).norm(dim=1).add_(TINY).reshape((b,) + (1,) * (grad.dim() - 1))
        return grad / n

    # ------------------------------------------------------------------ one run

    def _run(self, model, x0, y, generator, check: bool, target=None):
        b = x0.shape[0]
        view = (b,) + (1,) * (x0.dim() - 1)
        checkpoints = set(self.checkpoints(self.steps))
        x = _random_start(x0, self.eps, self.norm, generator)
        loss, grad, logits = self._loss_grad(model, x, y, check, target)
        wrong = logits.argmax(1) != y
        ever_wrong, x_adv, loss_adv = wrong.clone(), x.clone(), loss.clone()  # strongest misclassified point
        x_best, loss_best, grad_best = x.clone(), loss.clone(), grad.clone()  # highest-loss point
        eta = torch.full(view, 2.0 * self.eps, dtype=x0.dtype, device=x0.device)
        x_prev = x.clone()
        loss_prev = loss
        increases = torch.zeros(b, device=x0.device)
        loss_best_last = loss_best.clone()
        reduced_last = torch.ones(b, dtype=torch.bool, device=x0.device)
        last_w = 0
        for i in range(self.steps):
            with torch.no_grad():
                a = self.momentum if i > 0 else 1.0
                z = self._project(x + eta * self._direction(grad), x0)
                x_new = self._project(x + a * (z - x) + (1 - a) * (x - x_prev), x0)
                x_prev, x = x, x_new
            loss, grad, logits = self._loss_grad(model, x, y, False, target)
            with torch.no_grad():
                wrong = logits.argmax(1) != y
                stronger = wrong & (~ever_wrong | (loss > loss_adv))
                x_adv = torch.where(stronger.view(view), x, x_adv)
                loss_adv = torch.where(stronger, loss, loss_adv)
                ever_wrong |= wrong
                increases += (loss > loss_prev).to(increases.dtype)
                loss_prev = loss
                improved = loss > loss_best
                x_best = torch.where(improved.view(view), x, x_best)
                grad_best = torch.where(improved.view(view), grad, grad_best)
                loss_best = torch.where(improved, loss, loss_best)
                if i + 1 in checkpoints:
                    window = i + 1 - last_w
                    oscillating = increases <= window * self.rho
                    stalled = ~reduced_last & (loss_best_last >= loss_best)
                    reduce = oscillating | stalled
                    eta = torch.where(reduce.view(view), eta / 2, eta)
                    x = torch.where(reduce.view(view), x_best, x)
                    grad = torch.where(reduce.view(view), grad_best, grad)
                    reduced_last, loss_best_last = reduce, loss_best.clone()
                    increases.zero_()
                    last_w = i + 1
        out = torch.where(ever_wrong.view(view), x_adv, x_best)
        return out, torch.where(ever_wrong, loss_adv, loss_best), ever_wrong

    def perturb(self, model, x, y):
        generator = None if self.seed is None else torch.Generator(device=x.device).manual_seed(self.seed)
        best, best_loss, best_wrong = self._run(model, x, y, generator, check=True)
        for _ in range(self.restarts - 1):
            cand, loss, wrong = self._run(model, x, y, generator, check=False)
            take = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
            best = torch.where(take.view((-1,) + (1,) * (x.dim() - 1)), cand, best)
            best_loss = torch.where(take, loss, best_loss)
            best_wrong |= wrong
        return best


class APGDT(TargetedBudget, APGD):
    """APGD-T: targeted APGD on the targeted DLR loss, one run per target class (Croce & Hein 2020).

    The targets of a point are the classes ranked 2nd, 3rd, ... ``(n_target_classes + 1)``-th by the
    clean logits. For each target in that order, and each of ``restarts`` random starts, APGD (the same
    schedule as :class:`APGD`, ``steps`` iterations each) maximizes::

        DLR_t(z) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)

    and runs only on the points not misclassified yet, as in the AutoAttack reference code. AutoAttack's
    schedule (``standard``, L-inf and L2): ``n_target_classes = 9``, ``restarts = 1``, ``steps = 100``.
    Per sample the result is the first misclassified point found, else the highest targeted loss seen.
    ``n_target_classes`` is capped at ``C - 1`` for ``C`` classes.
    """

    name = "apgd_t"
    summary = "APGD-T: targeted APGD on the targeted DLR loss over the top-k other classes (AutoAttack)."
    citation = "arXiv:2003.01690"

    def __init__(
        self,
        eps: float = 8 / 255,
        steps: int = 100,
        norm: Literal["linf", "l2"] = "linf",
        n_target_classes: int = 9,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        seed: int | None = None,
    ):
        super().__init__(eps=eps, steps=steps, norm=norm, loss="dlr", restarts=restarts, rho=rho,
                         momentum=momentum, seed=seed)
        self.n_target_classes = params.count("apgd_t", "n_target_classes", n_target_classes)

    def perturb(self, model, x, y):
        generator = None if self.seed is None else torch.Generator(device=x.device).manual_seed(self.seed)
        with torch.no_grad():
            logits = model(x)
        check_classes(logits, y)
        n_classes = logits.shape[1]
        if n_classes < 4:
            raise ValueError(f"apgd_t: the targeted DLR loss needs at least 4 classes, the model has {n_classes}")
        order = logits.argsort(dim=1, descending=True)
        best = x.clone()
        best_loss = torch.full((x.shape[0],), -float("inf"), dtype=x.dtype, device=x.device)
        best_wrong = logits.argmax(1) != y
        for k in range(1, min(self.n_target_classes, n_classes - 1) + 1):
            for _ in range(self.restarts):
                idx = (~best_wrong).nonzero().flatten()
                if not len(idx):
                    return best
                target = order[idx, k]
                # a point whose clean top class is not y ranks y somewhere; skip it as a target
                target = torch.where(target == y[idx], order[idx, 0], target)
                cand, loss, wrong = self._run(model, x[idx], y[idx], generator, False, target)
                take = wrong | (loss > best_loss[idx])
                sel = idx[take]
                best[sel] = cand[take]
                best_loss[sel] = loss[take]
                best_wrong[sel] = wrong[take]
        return best
