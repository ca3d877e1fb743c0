"""Generative priors in use: the GAN loop, the PacGAN mode statistics, the Frechet distance.

>>> import toolkit_core as tt
>>> from toolkit_core.data import ring8
>>> from toolkit_core.models import MLP
>>> x, _ = ring8(2500)
>>> prior = tt.create("mmc", dim=1)                                            # doctest: +SKIP
>>> G, D = MLP((2, 128, 128, 2)), MLP((2, 128, 128, 1))                       # doctest: +SKIP
>>> history = tt.train_gan(G, D, x, prior, epochs=20, pair_weight=1.0, noise_dim=1)  # doctest: +SKIP
"""

from .frechet import frechet_distance, frechet_from_stats
from .gan import train_gan, train_gan_with_lr_drop
from .modes import MIXTURES, generate, mixture_spec, mode_statistics

__all__ = [
    "MIXTURES", "frechet_distance", "frechet_from_stats", "generate", "mixture_spec", "mode_statistics",
    "train_gan", "train_gan_with_lr_drop",
]
