"""Mode-coverage metrics on the PacGAN 2-D mixtures (ring of 8, grid of 25).

Convention for ``compute(model, data)``: ``model`` is a generator (any callable mapping a batch of
latents ``(B, k)`` to samples ``(B, 2)``; an ``nn.Module`` is left exactly as it was), ``data`` the
latents to feed it -- a tensor ``(n, k)``, a tuple ``(z, anything)`` or a DataLoader yielding ``z`` or
``(z, ...)``. With ``model=None``, ``data`` holds the generated samples themselves. PacGAN evaluates
2,500 samples: pass ``z = [prior.sample(2500), noise]``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch.utils.data import DataLoader

from toolkit_core.generative.modes import mixture_spec, mode_statistics
from toolkit_core.methods import Metric


def _batches(data):
    if isinstance(data, torch.Tensor):
        yield data
    elif isinstance(data, (tuple, list)) and data and isinstance(data[0], torch.Tensor):
        yield data[0]
    elif isinstance(data, DataLoader):
        for b in data:
            yield b[0] if isinstance(b, (tuple, list)) else b
    else:
        raise TypeError(
            f"data must be latents (a tensor, a tuple (z, ...) or a DataLoader), got {type(data).__name__}"
        )


def generated_samples(model, data) -> torch.Tensor:
    """Samples ``model(z)`` for every latent batch of ``data`` (``data`` itself when ``model`` is None)."""
    out = []
    with torch.no_grad():
        for z in _batches(data):
            out.append((z if model is None else model(z)).detach().float().cpu().reshape(len(z), -1))
    if not out:
        raise ValueError("data holds no latents; pass e.g. prior.sample(2500)")
    return torch.cat(out)


class _ModeMetric(Metric):
    """One key of :func:`~toolkit_core.generative.modes.mode_statistics` as a metric: a subclass sets
    ``key`` (also its name), ``higher`` (is a larger value better) and ``definition``."""

    citation = "arXiv:1712.04086"
    key: ClassVar[str] = ""
    higher: ClassVar[bool] = True
    definition: ClassVar[str] = ""
    applies_to: ClassVar[str] = "generator"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.key
        cls.higher_is_better = {cls.key: cls.higher}
        cls.definitions = {cls.key: cls.definition}

    def __init__(self, mixture: Literal["ring", "grid"] = "ring", threshold: float = 3.0):
        mixture_spec(mixture)
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0 (in units of the mixture std), got {threshold}")
        self.mixture = mixture
        self.threshold = threshold

    @classmethod
    def contract_inputs(cls):
        from toolkit_core.models import MLP

        torch.manual_seed(0)
        gen = MLP((2, 16, 2)).eval()
        z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
        return gen, (z, torch.zeros(64, dtype=torch.long))

    def statistics(self, model, data) -> dict:
        modes, std = mixture_spec(self.mixture)
        return mode_statistics(generated_samples(model, data), modes, std, self.threshold)

    def compute(self, model, data) -> dict[str, float]:
        value = self.statistics(model, data)[self.key]
        return {self.key: float(value) if self.key != "modes_captured" else int(value)}


class ModesCaptured(_ModeMetric):
    """Number of mixture modes that receive at least one high-quality sample (PacGAN, Lin et al. 2018)."""

    key = "modes_captured"
    summary = "Modes of the PacGAN ring/grid mixture with at least one sample within 3 std."
    definition = "modes of the mixture with at least one generated sample within 3 std"


class HighQualityFraction(_ModeMetric):
    """Fraction of samples within ``threshold`` std of their nearest mode (PacGAN, Lin et al. 2018)."""

    key = "high_quality_fraction"
    summary = "Fraction of generated samples within 3 std of their nearest PacGAN mixture mode."
    definition = "share of generated samples within 3 std of their nearest mode"


class ReverseKL(_ModeMetric):
    """``KL(p || uniform)`` of the generated high-quality mode histogram (PacGAN, Lin et al. 2018)."""

    key = "reverse_kl"
    summary = "KL divergence from the generated mode histogram to the uniform one (PacGAN protocol)."
    higher = False
    definition = "KL(p || uniform) of the high-quality samples' histogram p over modes"
