"""Square Attack (Andriushchenko et al., ECCV 2020, arXiv:1912.00049): black-box random search."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from toolkit_core import params
from toolkit_core.attacks import check_classes
from toolkit_core.methods import Attack, Scale

TINY = 1e-12
#: Iterations (of a 10 000-query run) after which the square fraction ``p`` is halved (the paper's
#: piecewise-constant schedule; with ``rescale_schedule`` the iterations scale with ``n_queries``).
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{k != y} z_k`` per sample: negative exactly when the point is misclassified."""
    z_y = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], -float("inf")).amax(1)
    return z_y - other


def p_schedule(it: int, p_init: float, n_queries: int, rescale: bool) -> float:
    """Fraction of pixels the square covers at iteration ``it``: ``p_init / 2^(halvings passed)``."""
    if rescale:
        it = int(it / n_queries * 10000)
    return p_init / 2 ** sum(it > h for h in HALVINGS)


def _pyramid(h: int, w: int, device, dtype) -> torch.Tensor:
    """``M(r, s) = sum_{k = d(r,s)}^{n-1} 1/(k+1)^2`` with ``d`` the L-inf distance to the centre."""
    r = torch.arange(h, device=device, dtype=dtype)
    s = torch.arange(w, device=device, dtype=dtype)
    d = torch.maximum((r[:, None] - (h - 1) / 2).abs(), (s[None, :] - (w - 1) / 2).abs()).floor().long()
    n = int(d.max()) + 1
    tail = (1.0 / torch.arange(1, n + 1, device=device, dtype=dtype) ** 2).flip(0).cumsum(0).flip(0)
    return tail[d]


def eta(s: int, device, dtype, generator) -> torch.Tensor:
    """The L2 update pattern of an ``s x s`` square: two opposite-sign pyramids, unit L2 norm.

    The paper's ``eta`` (Sec. 3.2): the square is split into two halves, each holding a pyramid that
    peaks at its centre, with opposite signs; randomly transposed.
    """
    a = s // 2
    left = _pyramid(s, max(a, 1), device, dtype)
    right = -_pyramid(s, max(s - a, 1), device, dtype)
    pat = torch.cat([left, right], 1)[:, :s]
    if torch.rand((), generator=generator, device=device) < 0.5:
        pat = pat.t()
    return pat / pat.norm().clamp_min(TINY)


class Square(Attack):
    """Square Attack: random search over square-shaped perturbations, using only the model's scores.

    The loss is the margin ``L(x) = z_y(x) - max_{k != y} z_k(x)`` (a point is fooled when ``L < 0``).
    Each iteration proposes, for every point not fooled yet, a change of a random ``s x s`` square
    (``s = round(sqrt(p * h * w))``, ``p`` halved on the paper's schedule from ``p_init``) and keeps
    it if ``L`` decreases:

    * **L-inf**: start from vertical stripes ``x + eps * sign`` (one random sign per column and
      channel); the proposal sets the square to ``x + eps * sign`` with one fresh random sign per
      channel, clipped to [0, 1].
    * **L2**: start from a grid of pyramid patterns of random sign, scaled to norm ``eps``; the
      proposal moves the perturbation mass of a second random square into the first one, adding the
      pattern ``eta`` of random sign per channel and whatever norm budget is still unused, so the
      perturbation keeps norm ``eps`` before clipping to [0, 1].

    One query = one forward pass of one point; each point spends at most ``n_queries`` queries (the
    starting point counts as one). The attack never computes a gradient: it runs under
    ``torch.no_grad``. Defaults are AutoAttack's (``p_init = 0.8``, ``n_queries = 5000``, schedule not
    rescaled).
    """

    name = "square"
    summary = "Square Attack: query-efficient black-box random search (L-inf, L2), no gradients."
    citation = "arXiv:1912.00049"
    uses_gradients = False

    def __init__(
        self,
        eps: float = 8 / 255,
        norm: Literal["linf", "l2"] = "linf",
        n_queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        rescale_schedule: bool = False,
        seed: int | None = None,
    ):
        params.number("square", "eps", eps, meaning="the radius of the threat ball")
        params.choice("square", "norm", norm, ("linf", "l2"))
        params.count("square", "n_queries", n_queries, meaning="queries per point")
        if not 0 < p_init <= 1:
            raise ValueError(f"square: p_init (initial fraction of pixels changed) must lie in (0, 1], got {p_init!r}")
        params.count("square", "restarts", restarts)
        params.seed("square", seed)
        self.eps = float(eps)
        self.norm = norm
        self.n_queries = n_queries
        self.p_init = float(p_init)
        self.restarts = restarts
        self.rescale_schedule = bool(rescale_schedule)
        self.seed = seed

    @classmethod
    def contract_params(cls) -> dict:
        return {"n_queries": 20, "seed": 0}

    @classmethod
    def experiment_variants(cls, scale: Scale) -> list[dict[str, Any]]:
        """Evaluation: 1000 queries (quick: 100), seeded (the paper's 5000 are too slow on a CPU)."""
        return [{"eps": scale.eps, "n_queries": 100 if scale.quick else 1000, "seed": 0}]

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _shape(x: torch.Tensor) -> tuple[int, int, int]:
        if x.dim() == 4:
            return x.shape[1], x.shape[2], x.shape[3]
        if x.dim() == 3:
            return 1, x.shape[1], x.shape[2]
        return 1, 1, x[0].numel()

    def _side(self, it: int, h: int, w: int, lo: int) -> int:
        p = p_schedule(it, self.p_init, self.n_queries, self.rescale_schedule)
        return max(min(int(round(math.sqrt(p * h * w))), h, w), min(lo, h, w))

    def _init_linf(self, x0, c, h, w, g):
        b = x0.shape[0]
        sign = torch.randint(0, 2, (b, c, 1, w), generator=g, device=x0.device).to(x0.dtype) * 2 - 1
        return (x0 + self.eps * sign).clamp(0.0, 1.0)

    def _init_l2(self, x0, c, h, w, g):
        b = x0.shape[0]
        s = max(min(h, w) // 5, 1)
        delta = torch.zeros_like(x0)
        pat = _pyramid(s, s, x0.device, x0.dtype)
        for r in range(0, h - s + 1, s):
            for q in range(0, w - s + 1, s):
                sign = torch.randint(0, 2, (b, c, 1, 1), generator=g, device=x0.device).to(x0.dtype) * 2 - 1
                delta[:, :, r:r + s, q:q + s] = pat * sign
        if not delta.any():
            delta = torch.randn(x0.shape, generator=g, device=x0.device, dtype=x0.dtype)
        norm = delta.flatten(1).norm(dim=1).clamp_min(TINY).view(-1, 1, 1, 1)
        return (x0 + delta * (self.eps / norm)).clamp(0.0, 1.0)

    def _propose_linf(self, x, x0, s, g):
        b, c, h, w = x.shape
        r = torch.randint(0, h - s + 1, (b,), generator=g, device=x.device)
        q = torch.randint(0, w - s + 1, (b,), generator=g, device=x.device)
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        mask = ((rows >= r[:, None]) & (rows < (r + s)[:, None]))[:, :, None] & (
            (cols >= q[:, None]) & (cols < (q + s)[:, None])
        )[:, None, :]
        sign = torch.randint(0, 2, (b, c, 1, 1), generator=g, device=x.device).to(x.dtype) * 2 - 1
        new = (x0 + self.eps * sign).clamp(0.0, 1.0)
        return torch.where(mask[:, None], new, x)

    def _propose_l2(self, x, x0, s, g):
        b, c, h, w = x.shape
        delta = x - x0
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)

        def window():
            r = torch.randint(0, h - s + 1, (b,), generator=g, device=x.device)
            q = torch.randint(0, w - s + 1, (b,), generator=g, device=x.device)
            m = ((rows[None] >= r[:, None]) & (rows[None] < (r + s)[:, None]))[:, :, None] & (
                (cols[None] >= q[:, None]) & (cols[None] < (q + s)[:, None])
            )[:, None, :]
            return m[:, None].expand(b, c, h, w), r, q

        m1, r1, q1 = window()
        m2, _, _ = window()
        union = m1 | m2
        total = delta.flatten(1).pow(2).sum(1)
        slack = (self.eps**2 - total).clamp_min(0.0) / c  # unused budget, spread over the channels
        mass = (delta * union).pow(2).sum((2, 3))  # (b, c): what the two squares carry now
        budget = (mass + slack[:, None]).sqrt()
        d1 = delta * m1
        n1 = d1.pow(2).sum((2, 3), keepdim=True).sqrt()
        e = eta(s, x.device, x.dtype, g)
        ir = (rows[None] - r1[:, None]).clamp(0, s - 1)  # (b, h): row of the pattern at each pixel
        ic = (cols[None] - q1[:, None]).clamp(0, s - 1)
        pat = e[ir[:, :, None], ic[:, None, :]][:, None] * m1  # the s x s pattern placed on square 1
        sign = torch.randint(0, 2, (b, c, 1, 1), generator=g, device=x.device).to(x.dtype) * 2 - 1
        new1 = pat * sign + d1 / n1.clamp_min(TINY)
        new1 = new1 * m1
        new1 = new1 * (budget / new1.pow(2).sum((2, 3)).sqrt().clamp_min(TINY))[:, :, None, None]
        new_delta = torch.where(union, torch.zeros_like(delta), delta) + new1
        # numerical safety: never exceed eps
        nd = new_delta.flatten(1).norm(dim=1).clamp_min(TINY)
        new_delta = new_delta * torch.clamp(self.eps / nd, max=1.0).view(-1, 1, 1, 1)
        return (x0 + new_delta).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ attack

    def _run(self, model, x0, y, g, check: bool):
        """One random search; returns (x_adv, margin) per point. ``x0`` is (B, C, H, W)."""
        _, c, h, w = x0.shape
        x = self._init_linf(x0, c, h, w, g) if self.norm == "linf" else self._init_l2(x0, c, h, w, g)
        logits = model(x)
        if check:
            check_classes(logits, y)
        loss = margin(logits, y)
        for it in range(1, self.n_queries):
            idx = (loss >= 0).nonzero().flatten()
            if not len(idx):
                break
            if self.norm == "linf":
                s = self._side(it, h, w, 1)
                cand = self._propose_linf(x[idx], x0[idx], s, g)
            else:
                s = self._side(it, h, w, 3)
                cand = self._propose_l2(x[idx], x0[idx], s, g)
            new = margin(model(cand), y[idx])
            take = new < loss[idx]
            sel = idx[take]
            x[sel] = cand[take]
            loss[sel] = new[take]
        return x, loss

    def perturb(self, model, x, y):
        shape = x.shape
        c, h, w = self._shape(x)
        x4 = x.reshape(x.shape[0], c, h, w)
        g = torch.Generator(device=x.device)
        g.manual_seed(self.seed if self.seed is not None else int(torch.randint(0, 2**62, ()).item()))

        def f(v):
            return model(v.reshape((-1,) + tuple(shape[1:])))

        if self.eps == 0:
            return x.clone()
        with torch.no_grad():
            best, best_loss = self._run(f, x4, y, g, check=True)
            for _ in range(self.restarts - 1):
                idx = (best_loss >= 0).nonzero().flatten()
                if not len(idx):
                    break
                cand, loss = self._run(f, x4[idx], y[idx], g, check=False)
                take = loss < best_loss[idx]
                best[idx[take]] = cand[take]
                best_loss[idx[take]] = loss[take]
        return best.reshape(shape)
