"""Real workloads: the user's model (:mod:`.models`) and data (:mod:`.data`) named in a config.

Tiny datasets in the real on-disk formats, for tests and benchmarks, come from :mod:`.synthetic`.
"""

from __future__ import annotations

from .data import DatasetNotFoundError, DataSpec, eval_loader, load_split, train_loader
from .models import CheckpointMismatchError, ModelSpec, Preprocessed, build_model, input_bounds

__all__ = ["CheckpointMismatchError", "DataSpec", "DatasetNotFoundError", "ModelSpec", "Preprocessed",
           "build_model", "eval_loader", "input_bounds", "load_split", "train_loader"]
