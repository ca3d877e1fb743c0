"""What the stages share: the digits data of a run, a fresh model, accuracy, file-safe labels."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import data as tt_data
from ..models import DigitsCNN
from .runner import RunContext, seed_everything


def _subset(ds: TensorDataset, n: int, seed: int) -> TensorDataset:
    if not n or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(ds), generator=g)[:n].sort().values
    return TensorDataset(*(t[keep] for t in ds.tensors))


def digits(ctx: RunContext) -> tuple[TensorDataset, TensorDataset]:
    if "digits" not in ctx.data:
        cfg = ctx.config
        size, seed = cfg.get("data", "size"), cfg.seed
        train = _subset(tt_data.load_digits(size, "train", seed=0), cfg.get("data", "train_size"), seed)
        test = _subset(tt_data.load_digits(size, "test", seed=0), cfg.get("data", "test_size"), seed + 1)
        ctx.data["digits"] = (train, test)
    return ctx.data["digits"]


def new_model(ctx: RunContext) -> torch.nn.Module:
    cfg = ctx.config
    seed_everything(cfg.seed)
    return DigitsCNN(size=cfg.get("data", "size"), width=cfg.get("model", "width"),
                     hidden=cfg.get("model", "hidden")).to(ctx.device)


def accuracy(model: torch.nn.Module, ds: TensorDataset, device: torch.device) -> float:
    from ..modelstate import preserved

    correct = 0
    with preserved(model, mode=False), torch.no_grad():
        for x, y in DataLoader(ds, batch_size=512):
            correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
    return correct / len(ds)


def safe_label(label: str) -> str:
    """``label`` with every character outside [A-Za-z0-9_-] replaced by ``_``, at most 80 characters."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:80]
