"""The GAN loop that consumes a prior: plain GAN and MMCGAN.

One generator step on a batch of training points ``x_i`` (indices ``i``) minimizes

    L_G = E_z[ softplus(-D(G(z))) ]  +  mu * mean_i |G([c_i, n_i]) - x_i|^2,    z = [prior.sample(), noise]

(the non-saturating GAN loss of Goodfellow et al. 2014, arXiv:1406.2661, plus, when ``pair_weight = mu > 0``,
the MMCGAN pairing term: every training point has its own code ``c_i = prior.codes[i]``, so no mode can
be dropped; Zheng, Sang & Xu, MMCGAN). The noise ``n_i`` in the pairing term is set by ``pair_noise``:

    pair_noise = "sampled" (default):  n_i ~ N(0, I_k), drawn afresh at every step, so every noise value is
                                       tied to the data (the definition since 2026-11-29);
    pair_noise = "zero":               n_i = 0, so only G([c_i, 0]) is tied to x_i and the noise stays free
                                       (the earlier definition).

The adversarial term samples the noise in both cases. On the PacGAN toys the two are alike; on 16x16 digits
"sampled" gives blurred samples and "zero" the lower Frechet distance (docs/results/priors.md, section c), so
use "zero" for images. With ``noise_dim = 0`` or ``pair_weight = 0`` the choice changes nothing.
The discriminator step minimizes
``softplus(-D(x)) + softplus(D(G(z)))``. ``prior = gaussian`` and ``pair_weight = 0`` is the plain GAN.

Checkpoints: ``<checkpoint_dir>/gan_last.pt`` after every epoch, written atomically (temporary file +
``os.replace``) by rank 0, with both networks, both optimizers, the prior's state, every RNG and the
history; ``resume=True`` continues from it and reproduces an uninterrupted run bit for bit on CPU.
Distributed: when ``torch.distributed`` is initialized (or under ``torchrun``), each rank loads its
shard through a ``DistributedSampler``, draws its own latents (rank r > 0 reseeds with ``seed + r``
after the prior is fitted), gradients are averaged with ``all_reduce`` after every backward pass,
initial weights are broadcast from rank 0, and only rank 0 writes checkpoints, which hold every rank's
RNG state; a resume needs the same number of processes.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ..training import distributed as dist_utils
from ..training.checkpoint import restore_rng
from ..training.history import History
from ..training.runtime import Runtime
from .points import training_points

CHECKPOINT_NAME = "gan_last.pt"
#: How the pairing term sets the noise dimensions: ``n_i ~ N(0, I)`` or ``n_i = 0`` (module docstring).
PAIR_NOISE = ("sampled", "zero")
FORMAT = 2  # 2: per-rank RNG states and the world size


def _latent(prior, n: int, noise_dim: int, device) -> torch.Tensor:
    z = torch.as_tensor(prior.sample(n)).float()
    if noise_dim:
        z = torch.cat([z, torch.randn(n, noise_dim)], dim=1)
    return z.to(device)


def _prior_state(prior) -> dict[str, Any]:
    if hasattr(prior, "state_dict"):  # a Prior: Method.state_dict (its state_attributes)
        return {k: v for k, v in prior.state_dict().items() if v is not None}
    return {"codes": prior.codes} if getattr(prior, "codes", None) is not None else {}


def train_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    data,
    prior,
    epochs: int = 10,
    pair_weight: float = 0.0,
    noise_dim: int = 0,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    batch_size: int = 128,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = "cpu",
    fit_prior: bool = True,
    pair_noise: str = "sampled",
) -> History:
    """Train ``generator`` against ``discriminator`` on ``data`` with latents from ``prior``.

    ``generator`` maps ``(B, prior.dim + noise_dim)`` latents to samples shaped like the data;
    ``discriminator`` maps samples to ``(B,)`` or ``(B, 1)`` logits. ``prior`` is fitted on the data
    (``prior.fit(x)``) unless it already holds one code per point or ``fit_prior=False``.
    ``pair_weight`` is MMCGAN's ``mu`` (0: plain GAN). ``pair_noise`` sets the noise in the pairing term,
    ``mean_i |G([c_i, n_i]) - x_i|^2``: ``"sampled"`` draws ``n_i ~ N(0, I)`` at every step, ``"zero"`` uses
    ``n_i = 0`` (the adversarial term samples the noise either way; images: ``"zero"``, see the module
    docstring). Adam(``lr``, ``betas``) for both networks.
    Returns a :class:`~toolkit_core.training.History` with the per-epoch means of ``d_loss``,
    ``g_loss`` (adversarial part), ``pair_loss`` and ``time_s``; its meta records ``pair_weight``,
    ``noise_dim``, ``pair_noise`` and the prior.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if pair_weight < 0:
        raise ValueError(f"pair_weight must be >= 0, got {pair_weight}")
    if noise_dim < 0:
        raise ValueError(f"noise_dim must be >= 0, got {noise_dim}")
    _check_pair_noise(pair_noise)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir of the run to continue")
    x = training_points(data, min_points=2, flatten=False)
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    with Runtime(device, path, FORMAT, "toolkit_core.train_gan") as rt:
        return _train_gan(generator, discriminator, x, prior, rt, epochs=epochs, pair_weight=pair_weight,
                          noise_dim=noise_dim, lr=lr, betas=betas, batch_size=batch_size, resume=resume, seed=seed,
                          progress=progress, fit_prior=fit_prior, pair_noise=pair_noise)


def _check_pair_noise(pair_noise: str) -> None:
    if pair_noise not in PAIR_NOISE:
        raise ValueError(f"pair_noise must be one of {', '.join(repr(c) for c in PAIR_NOISE)} (the noise in the "
                         f"pairing term: drawn ~ N(0, I) or set to 0), got {pair_noise!r}")


def train_gan_with_lr_drop(generator: nn.Module, discriminator: nn.Module, data, prior, *, epochs: int, lr: float,
                           lr_drop: bool = True, seed: int = 0, fit_prior: bool = True, pair_noise: str = "sampled",
                           **kwargs) -> list[History]:
    """:func:`train_gan` with the last quarter of the epochs at ``lr / 10`` (``lr_drop``; with fewer than 4
    epochs, or ``lr_drop=False``, one call at ``lr``): two calls, so the second phase starts with fresh Adam
    state and seed ``seed + 7919``; the prior is fitted (``fit_prior``) in the first only. The schedule
    under which docs/results/priors.md (b1) measured the PacGAN targets. ``pair_noise`` (``"sampled"``:
    ``n_i ~ N(0, I)``, ``"zero"``: ``n_i = 0`` in ``mu * mean_i |G([c_i, n_i]) - x_i|^2``) holds in both
    phases; the other keyword arguments go to :func:`train_gan`. Returns each phase's history."""
    _check_pair_noise(pair_noise)  # before the first phase trains
    phases = [(epochs - epochs // 4, lr), (epochs // 4, lr / 10)] if lr_drop and epochs >= 4 else [(epochs, lr)]
    return [train_gan(generator, discriminator, data, prior, epochs=ep, lr=phase_lr, seed=seed + 7919 * i,
                      fit_prior=fit_prior and i == 0, pair_noise=pair_noise, **kwargs)
            for i, (ep, phase_lr) in enumerate(phases)]


def _train_gan(generator, discriminator, x, prior, rt: Runtime, *, epochs, pair_weight, noise_dim, lr, betas,
               batch_size, resume, seed, progress, fit_prior, pair_noise) -> History:
    n = len(x)
    ctx = rt.ctx
    dev = ctx.device
    rt.seed(seed, per_rank=False)  # the prior is fitted alike on every rank

    codes = getattr(prior, "codes", None)
    if fit_prior and (codes is None or len(codes) != n):
        prior.fit(x)
    codes = getattr(prior, "codes", None)
    if pair_weight > 0 and (codes is None or len(codes) != n):
        raise ValueError(
            f"pair_weight > 0 needs one prior code per training point ({n}); the prior has "
            f"{'none' if codes is None else len(codes)}: fit it on the same data or use fit_prior=True"
        )
    if ctx.distributed and ctx.rank:
        rt.seed(seed)  # seed + rank: the prior is fitted alike everywhere; latents differ per rank
    generator.to(dev).train()
    discriminator.to(dev).train()
    rt.broadcast(generator)
    rt.broadcast(discriminator)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)

    dataset = TensorDataset(x, torch.arange(n))
    loader_gen = torch.Generator().manual_seed(seed)
    if ctx.distributed:
        if batch_size % ctx.world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the world size {ctx.world_size}")
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
        loader = DataLoader(dataset, batch_size=batch_size // ctx.world_size, sampler=sampler)
    else:
        sampler = None
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=loader_gen)

    history = History(meta={"pair_weight": pair_weight, "noise_dim": noise_dim, "pair_noise": pair_noise,
                            "prior": getattr(prior, "name", "")})
    start = 0
    ckpt = rt.load() if resume else None
    if ckpt is not None:
        generator.load_state_dict(ckpt["generator"])
        discriminator.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        if ckpt.get("prior") and hasattr(prior, "load_state_dict"):
            prior.load_state_dict(ckpt["prior"])
        history = History.from_dict(ckpt["history"])
        if history.meta.get("pair_noise", "sampled") != pair_noise:  # checkpoints before the option: sampled
            raise ValueError(f"the checkpoint {rt.checkpoint} was trained with "
                             f"pair_noise={history.meta.get('pair_noise', 'sampled')!r}, not {pair_noise!r}: "
                             "resume with the same value or start a new run")
        restore_rng(ckpt["rng"][ctx.rank], loader_gen)
        start = int(ckpt["epoch"])
    codes_dev = None if getattr(prior, "codes", None) is None else torch.as_tensor(prior.codes).float().to(dev)

    steps = math.ceil(len(loader))
    with rt.progress("train_gan", max(epochs - start, 0) * steps, progress) as bar:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            if sampler is not None:
                sampler.set_epoch(epoch)
            sums = torch.zeros(4, dtype=torch.float64)
            for xb, ib in loader:
                xb = xb.to(dev)
                b = len(xb)
                # discriminator step
                z = _latent(prior, b, noise_dim, dev)
                with torch.no_grad():
                    fake = generator(z)
                d_loss = F.softplus(-discriminator(xb)).mean() + F.softplus(discriminator(fake)).mean()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                rt.average_gradients(discriminator)
                opt_d.step()
                # generator step
                z = _latent(prior, b, noise_dim, dev)
                g_adv = F.softplus(-discriminator(generator(z))).mean()
                loss = g_adv
                pair = torch.zeros((), device=dev)
                if pair_weight > 0:
                    c = codes_dev[ib.to(dev)]
                    if noise_dim:  # n_i ~ N(0, I) or n_i = 0 (pair_noise); the adversarial z above is sampled
                        n_i = torch.randn(b, noise_dim) if pair_noise == "sampled" else torch.zeros(b, noise_dim)
                        c = torch.cat([c, n_i.to(dev)], dim=1)
                    pair = (generator(c) - xb).flatten(1).pow(2).sum(1).mean()
                    loss = loss + pair_weight * pair
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                rt.average_gradients(generator)
                opt_g.step()
                sums += torch.tensor([d_loss.item() * b, g_adv.item() * b, pair.item() * b, b], dtype=torch.float64)
                stats = f"epoch {epoch + 1}/{epochs}  D {d_loss.item():.3f}  G {g_adv.item():.3f}"
                bar.update(info=stats)
                bar.advance()
            dist_utils.all_reduce_(sums, ctx)
            cnt = max(float(sums[3]), 1.0)
            history.epochs.append({
                "epoch": epoch + 1, "d_loss": float(sums[0]) / cnt, "g_loss": float(sums[1]) / cnt,
                "pair_loss": float(sums[2]) / cnt, "time_s": time.perf_counter() - t0,
            })
            rt.save({
                "epoch": epoch + 1, "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "prior": _prior_state(prior),
                "history": history.to_dict(),
            }, loader_gen)
    return history
