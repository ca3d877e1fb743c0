"""Mode-coverage statistics of the PacGAN toy protocol (Lin et al. 2018, arXiv:1712.04086).

For generated samples ``s_1..s_n`` and mixture modes ``m_1..m_K`` with component std ``sigma``:

* a sample is *high quality* if ``min_k |s - m_k| <= 3 sigma`` (within 3 std of its nearest mode);
* a mode is *captured* if at least one high-quality sample has it as nearest mode;
* ``reverse_kl = KL(p || u) = sum_k p_k log(K p_k)`` where ``p_k`` is the fraction of the high-quality
  samples whose nearest mode is ``k`` and ``u`` the uniform distribution over the K modes (``0 log 0 = 0``;
  ``log K`` -- the value of a fully collapsed generator -- when there is no high-quality sample).
  Operational choice (ours): the histogram counts high-quality samples only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data import GRID_MODES, GRID_STD, RING_MODES, RING_STD
from ..modelstate import model_device

MIXTURES: dict[str, tuple[Tensor, float]] = {"ring": (RING_MODES, RING_STD), "grid": (GRID_MODES, GRID_STD)}


def mixture_spec(mixture: str) -> tuple[Tensor, float]:
    """``(modes (K, 2), std)`` of the PacGAN ``"ring"`` (8 modes) or ``"grid"`` (25 modes)."""
    if mixture not in MIXTURES:
        raise ValueError(f"mixture must be one of {', '.join(MIXTURES)}, got {mixture!r}")
    return MIXTURES[mixture]


def mode_statistics(samples: Tensor, modes: Tensor, std: float, threshold: float = 3.0) -> dict:
    """``modes_captured``, ``high_quality_fraction``, ``reverse_kl`` and the per-mode ``counts``."""
    samples = torch.as_tensor(samples).detach().float().cpu()
    modes = torch.as_tensor(modes).float().cpu()
    if samples.dim() != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(
            f"samples must have shape (n, {modes.shape[1]}) like the modes, got {tuple(samples.shape)}"
        )
    if len(samples) == 0:
        raise ValueError("no samples: mode statistics need at least one generated sample")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or infinite values (did the generator diverge?)")
    dist = torch.cdist(samples, modes)
    dmin, nearest = dist.min(dim=1)
    hq = dmin <= threshold * std
    k = len(modes)
    counts = torch.bincount(nearest[hq], minlength=k).double()
    n_hq = float(counts.sum())
    if n_hq == 0:
        rkl = math.log(k)
    else:
        p = counts / n_hq
        nz = p > 0
        rkl = float((p[nz] * torch.log(p[nz] * k)).sum())
    return {
        "modes_captured": int((counts > 0).sum()),
        "high_quality_fraction": float(hq.double().mean()),
        "reverse_kl": rkl,
        "counts": counts.long(),
    }


@torch.no_grad()
def generate(generator, prior, n: int, noise_dim: int = 0, batch_size: int = 1024, seed: int | None = None) -> Tensor:
    """``n`` samples ``G([prior.sample(), noise])`` without touching the generator's mode or the global RNG
    (when ``seed`` is given)."""
    def _run():
        out = []
        for s in range(0, n, batch_size):
            b = min(batch_size, n - s)
            z = torch.as_tensor(prior.sample(b)).float()
            if noise_dim:
                z = torch.cat([z, torch.randn(b, noise_dim)], dim=1)
            dev = model_device(generator) if isinstance(generator, torch.nn.Module) else torch.device("cpu")
            out.append(generator(z.to(dev)).cpu())
        return torch.cat(out) if out else torch.empty(0)

    if seed is None:
        return _run()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _run()
