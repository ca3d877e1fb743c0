"""The one conversion of training points: :func:`training_points` (priors' ``fit`` and ``train_gan``)."""

from __future__ import annotations

import torch
from torch import Tensor


def training_points(X, min_points: int = 1, flatten: bool = True) -> Tensor:
    """``X`` as a float CPU tensor ``(N, D)`` (``flatten=False``: ``(N, ...)``, the points' own shape).

    ``X``: a tensor ``(N, ...)``, an array, a tuple ``(x, y)`` of tensors, a Dataset or a DataLoader (the
    first element of every batch/item is used). Raises ``TypeError`` for anything else and ``ValueError``
    for a scalar or 1-D input, fewer than ``min_points`` rows, or NaN/infinite values.
    :meth:`toolkit_core.methods.Prior.fit` calls it once, so a prior's ``fit_points`` receives checked
    data; :func:`toolkit_core.generative.train_gan` reads its data with it too.
    """
    from torch.utils.data import DataLoader, Dataset

    if isinstance(X, (tuple, list)) and X and isinstance(X[0], Tensor):
        X = X[0]
    if isinstance(X, DataLoader):
        parts = [b[0] if isinstance(b, (tuple, list)) else b for b in X]
        if not parts:
            raise ValueError(f"the data is empty; at least {min_points} training point(s) are needed")
        X = torch.cat([torch.as_tensor(p) for p in parts])
    elif isinstance(X, Dataset) and not isinstance(X, Tensor):
        return training_points(DataLoader(X, batch_size=1024, shuffle=False), min_points, flatten)
    try:
        X = torch.as_tensor(X).detach().cpu().float()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"training points must be a tensor (N, ...), an array, a tuple (x, y), a Dataset or a "
                        f"DataLoader, got {type(X).__name__}") from exc
    if X.dim() < 2:
        raise ValueError(
            f"X must have shape (N, ...) with one row per training point, got shape {tuple(X.shape)}; "
            "for scalar data use X[:, None]"
        )
    if flatten:
        X = X.reshape(len(X), -1)
    if len(X) < min_points:
        raise ValueError(f"at least {min_points} training point(s) are needed, got {len(X)}")
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; remove or impute them first")
    return X
