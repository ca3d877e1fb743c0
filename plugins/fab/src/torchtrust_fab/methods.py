"""FAB: fast adaptive boundary attack (Croce & Hein, ICML 2020, arXiv:1907.02044), L-inf and L2."""

from __future__ import annotations

from typing import Literal

import torch

from toolkit_core import params
from toolkit_core.attacks import TargetedBudget, check_classes
from toolkit_core.methods import Attack

from .projection import project

TINY = 1e-12


def _norm(v: torch.Tensor, norm: str) -> torch.Tensor:
    return v.abs().amax(1) if norm == "linf" else v.norm(dim=1)


class FAB(TargetedBudget, Attack):
    """FAB: the smallest adversarial perturbation found by projecting onto linearized boundaries.

    At iterate ``x`` (start: the clean point ``x0``) with class logits ``z`` and a boundary
    ``g = z_t - z_y`` (targeted FAB-T: ``t`` fixed; untargeted: the class whose linearized boundary is
    closest, ``argmin_k |g_k| / ||grad g_k||_*`` with ``*`` the dual norm), let ``P(p)`` be the
    minimum-``norm`` step from ``p`` onto the hyperplane ``g(x) + grad g(x) . (v - x) = 0`` inside
    ``[0, 1]^d`` (exact, :mod:`torchtrust_fab.projection`). With ``d = P(x)`` and ``d0 = P(x0)``::

        a      = min( ||d|| / (||d|| + ||d0||), alpha_max )
        x_new  = clip_[0,1]( (1 - a)(x + eta d) + a (x0 + eta d0) )

    and when ``x_new`` is misclassified it is recorded if closer to ``x0`` than the best so far, then
    pulled back: ``x_new <- (1 - beta) x0 + beta x_new``. Restarts after the first start at
    ``x0 + u``, ``u`` uniform of norm ``min(best, eps) / 2``. FAB is a minimum-norm attack; as in
    AutoAttack a point counts as broken when its smallest adversarial perturbation has norm
    ``<= eps``: then that point is returned, otherwise the clean point (the per-sample best over all
    targets and restarts). Defaults are AutoAttack's FAB-T: ``steps = 100``, ``alpha_max = 0.1``,
    ``eta = 1.05``, ``beta = 0.9``, ``n_target_classes = 9``, one restart. The targets of a point
    are its 2nd, 3rd, ... highest clean logits. Cost per iteration: 2 forwards and 1 backward
    (targeted) or ``C`` backwards (untargeted, ``C`` classes).
    """

    name = "fab"
    summary = "FAB / FAB-T: minimum-norm boundary attack by linearized projections (L-inf, L2)."
    citation = "arXiv:1907.02044"

    def __init__(
        self,
        eps: float = 8 / 255,
        norm: Literal["linf", "l2"] = "linf",
        steps: int = 100,
        targeted: bool = True,
        n_target_classes: int = 9,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        seed: int | None = None,
    ):
        params.number("fab", "eps", eps, meaning="the radius of the threat ball")
        params.choice("fab", "norm", norm, ("linf", "l2"))
        for key, v in (("steps", steps), ("n_target_classes", n_target_classes), ("restarts", restarts)):
            params.count("fab", key, v)
        if not 0 <= alpha_max <= 1:
            raise ValueError(f"fab: alpha_max must lie in [0, 1], got {alpha_max!r}")
        if not eta >= 1:
            raise ValueError(f"fab: eta (the overshoot) must be >= 1, got {eta!r}")
        if not 0 < beta <= 1:
            raise ValueError(f"fab: beta (the backward step) must lie in (0, 1], got {beta!r}")
        params.seed("fab", seed)
        self.eps = float(eps)
        self.norm = norm
        self.steps = steps
        self.targeted = bool(targeted)
        self.n_target_classes = n_target_classes
        self.restarts = restarts
        self.alpha_max = float(alpha_max)
        self.eta = float(eta)
        self.beta = float(beta)
        self.seed = seed

    # ------------------------------------------------------------------ linearization

    def _boundary(self, model, x, y, target, shape):
        """``g(x)`` and ``grad g(x)`` (flat) of the boundary to attack, one per row."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            z = model(x.reshape(shape))
            z_y = z.gather(1, y[:, None])[:, 0]
            if target is not None:
                g = z.gather(1, target[:, None])[:, 0] - z_y
                (w,) = torch.autograd.grad(g.sum(), x)
                return g.detach(), w
            n_cls = z.shape[1]
            gs, ws = [], []
            for k in range(n_cls):
                gk = z[:, k] - z_y
                (wk,) = torch.autograd.grad(gk.sum(), x, retain_graph=k < n_cls - 1)
                gs.append(gk.detach())
                ws.append(wk)
        g_all, w_all = torch.stack(gs, 1), torch.stack(ws, 1)  # (N, C), (N, C, d)
        dual = w_all.abs().sum(2) if self.norm == "linf" else w_all.norm(dim=2)
        dist = g_all.abs() / (dual + TINY)
        dist.scatter_(1, y[:, None], float("inf"))
        k = dist.argmin(1)
        return g_all.gather(1, k[:, None])[:, 0], w_all[torch.arange(len(k)), k]

    # ------------------------------------------------------------------ one run

    def _run(self, model, x0, y, target, shape, x_start):
        """FAB from ``x_start``; returns the closest adversarial found (flat) and its norm (inf: none)."""
        n = x0.shape[0]
        best = x0.clone()
        best_norm = torch.full((n,), float("inf"), dtype=x0.dtype, device=x0.device)
        x = x_start.clone()
        for _ in range(self.steps):
            g, w = self._boundary(model, x, y, target, shape)
            with torch.no_grad():
                both = project(torch.cat([x, x0]), torch.cat([w, w]), torch.cat([-g, -g - (w * (x0 - x)).sum(1)]),
                               self.norm)
                d, d0 = both[:n], both[n:]
                nd, nd0 = _norm(d, self.norm), _norm(d0, self.norm)
                a = (nd / (nd + nd0).clamp_min(TINY)).clamp(0.0, self.alpha_max)[:, None]
                x_new = ((1 - a) * (x + self.eta * d) + a * (x0 + self.eta * d0)).clamp(0.0, 1.0)
                adv = model(x_new.reshape(shape)).argmax(1) != y
                dist = _norm(x_new - x0, self.norm)
                closer = adv & (dist < best_norm)
                best[closer] = x_new[closer]
                best_norm[closer] = dist[closer]
                x = torch.where(adv[:, None], (1 - self.beta) * x0 + self.beta * x_new, x_new)
        return best, best_norm

    def _start(self, x0, best_norm, restart, g):
        if restart == 0:
            return x0.clone()
        if self.norm == "linf":
            u = torch.rand(x0.shape, generator=g, device=x0.device, dtype=x0.dtype) * 2 - 1
            u = u / u.abs().amax(1, keepdim=True).clamp_min(TINY)
        else:
            u = torch.randn(x0.shape, generator=g, device=x0.device, dtype=x0.dtype)
            u = u / u.norm(dim=1, keepdim=True).clamp_min(TINY)
        r = torch.minimum(best_norm, torch.full_like(best_norm, self.eps)) / 2
        return (x0 + r[:, None] * u).clamp(0.0, 1.0)

    def perturb(self, model, x, y):
        shape = (-1,) + tuple(x.shape[1:])
        flat = x.reshape(x.shape[0], -1)
        g = torch.Generator(device=x.device)
        g.manual_seed(self.seed if self.seed is not None else int(torch.randint(0, 2**62, ()).item()))
        with torch.no_grad():
            logits = model(x)
        check_classes(logits, y)
        n_cls = logits.shape[1]
        best = flat.clone()
        best_norm = torch.full((x.shape[0],), float("inf"), dtype=x.dtype, device=x.device)
        best_norm[logits.argmax(1) != y] = 0.0  # already misclassified: nothing to do
        order = logits.argsort(1, descending=True)
        targets = range(1, min(self.n_target_classes, n_cls - 1) + 1) if self.targeted else [None]
        for k in targets:
            for restart in range(self.restarts):
                idx = (best_norm > self.eps).nonzero().flatten()  # points not broken yet
                if not len(idx):
                    break
                target = None
                if k is not None:
                    target = order[idx, k]
                    target = torch.where(target == y[idx], order[idx, 0], target)
                x0 = flat[idx]
                start = self._start(x0, best_norm[idx], restart, g)
                cand, cand_norm = self._run(model, x0, y[idx], target, shape, start)
                closer = cand_norm < best_norm[idx]
                best[idx[closer]] = cand[closer]
                best_norm[idx[closer]] = cand_norm[closer]
        out = torch.where((best_norm <= self.eps + 1e-6)[:, None], best, flat)
        # numerical safety: the returned point lies in the threat ball
        if self.norm == "linf":
            out = torch.minimum(torch.maximum(out, flat - self.eps), flat + self.eps)
        else:
            dlt = out - flat
            out = flat + dlt * torch.clamp(self.eps / _norm(dlt, "l2").clamp_min(TINY), max=1.0)[:, None]
        return out.clamp(0.0, 1.0).reshape(x.shape)
