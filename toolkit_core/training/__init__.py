"""Training for defenses: :func:`fit` with attacks in the loop, atomic checkpoints, and DDP.

>>> import toolkit_core as tt
>>> from toolkit_core.data import digits_loaders
>>> from toolkit_core.models import DigitsCNN
>>> train, test = digits_loaders(size=16)                                        # doctest: +SKIP
>>> defense = tt.create("alp", attack=tt.create("pgd", eps=0.1, alpha=0.025, steps=5))  # doctest: +SKIP
>>> history = tt.fit(DigitsCNN(), train, defense, epochs=3, eval_data=test)      # doctest: +SKIP

Under ``torchrun --nproc_per_node 2 script.py`` the same call trains with DistributedDataParallel.
"""

from .adversarial import (
    AdversarialDefense,
    accuracy,
    craft,
    eval_logits,
    repr_with_attack,
    resolve_attack,
    training_attack,
    unwrap_model,
)
from .checkpoint import load_checkpoint, save_atomic
from .history import History
from .loop import DEFAULT_LR, fit

__all__ = [
    "AdversarialDefense",
    "DEFAULT_LR", "History", "accuracy", "craft", "eval_logits", "fit", "load_checkpoint", "repr_with_attack",
    "resolve_attack", "save_atomic", "training_attack", "unwrap_model",
]
