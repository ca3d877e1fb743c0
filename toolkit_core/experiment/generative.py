"""Stage ``generative``: GAN vs GAN-with-prior on the PacGAN ring and grid (modes, quality, reverse KL)."""

from __future__ import annotations

from typing import Any

import torch

from .. import data as tt_data
from .config import instantiate
from .figures import plot_gan_scatter
from .runner import RunContext, seed_everything

#: PacGAN Table 1 (Lin et al. 2018, arXiv:1712.04086): modes / high-quality % / reverse KL.
PACGAN_TABLE1 = {
    "ring": {"GAN": (6.3, 98.2, 0.45), "PacGAN2": (7.9, 95.6, 0.07), "PacGAN4": (7.8, 95.9, 0.07)},
    "grid": {"GAN": (17.3, 94.8, 0.70), "PacGAN2": (23.8, 91.3, 0.13), "PacGAN4": (24.8, 93.6, 0.04)},
}


def stage_generative(ctx: RunContext) -> dict[str, Any]:
    """Plain GAN (gaussian prior) and the same networks with every other prior (pairing on, MMCGAN)."""
    from ..catalog import get_info
    from ..generative import generate, mixture_spec, mode_statistics, train_gan_with_lr_drop
    from ..models import MLP

    cfg = ctx.config
    g = cfg.settings["generative"]
    specs = cfg.methods["priors"]
    if not specs or not g["mixtures"]:
        return {"summary": "no priors configured", "figures": []}
    runs: dict[str, dict[str, Any]] = {}
    scatter: dict[tuple[str, str], torch.Tensor] = {}
    advance = ctx.task("GANs", len(g["mixtures"]) * len(specs) * g["seeds"])
    for mixture in g["mixtures"]:
        sampler, _, _ = tt_data.TOY_MIXTURES[mixture]
        modes, std = mixture_spec(mixture)
        for spec in specs:
            pair = g["pair_weight"] if get_info(spec.name).cls.pairing else 0.0
            label = f"{mixture} / {spec.label}" + (" (GAN)" if pair == 0 else " (paired)")
            stats = []
            for s in range(g["seeds"]):
                seed = cfg.seed + 1000 * s
                x, _ = sampler(g["train_points"], seed=seed)
                prior = instantiate(spec, "prior")
                seed_everything(seed)
                prior.fit(x)
                h = g["hidden"]
                G = MLP((prior.dim + g["noise_dim"], h, h, 2))
                D = MLP((2, h, h, 1))
                train_gan_with_lr_drop(G, D, x, prior, epochs=g["epochs"], lr=g["lr"], lr_drop=g["lr_drop"],
                                       pair_weight=pair, noise_dim=g["noise_dim"], pair_noise=g["pair_noise"],
                                       batch_size=g["batch_size"],
                                       seed=seed, device=ctx.device, progress=ctx.progress is not None,
                                       fit_prior=False)
                samples = generate(G.eval(), prior, g["samples"], noise_dim=g["noise_dim"], seed=seed)
                st = mode_statistics(samples, modes, std)
                stats.append({k: float(st[k]) for k in ("modes_captured", "high_quality_fraction", "reverse_kl")})
                if s == 0:
                    scatter[(mixture, label)] = samples
                advance()
            runs[label] = _mean_std(stats, len(modes))
    plot_gan_scatter(ctx, scatter)
    reference = {f"{m} / {name} (PacGAN Table 1)": {"modes": v[0], "high quality %": v[1], "reverse KL": v[2]}
                 for m in g["mixtures"] for name, v in PACGAN_TABLE1[m].items()}
    all_modes = [k for k, v in runs.items() if v["all modes on every seed"]]
    every = f"on every one of {g['seeds']} seeds" if g["seeds"] > 1 else "on its single seed"
    return {"table": runs, "PacGAN Table 1 (published)": reference, "figures": ["gan_samples.png"],
            "summary": f"{len(runs)} run(s); all modes {every}: {', '.join(all_modes) or 'none'}"}


def _mean_std(stats: list[dict[str, float]], n_modes: int) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {"seeds": len(stats)}
    for key, name, scale in (("modes_captured", "modes", 1), ("high_quality_fraction", "high quality %", 100),
                             ("reverse_kl", "reverse KL", 1)):
        vals = np.array([s[key] for s in stats]) * scale
        out[name] = float(vals.mean())
        out[f"{name} std"] = float(vals.std())
    out["all modes on every seed"] = all(s["modes_captured"] == n_modes for s in stats)
    out["of modes"] = n_modes
    return out
