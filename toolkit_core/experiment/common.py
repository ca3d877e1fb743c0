"""What the stages share: the data of a run (the bundled digits, or the user's [data]), a fresh model
(the digits CNN, or the user's [model]), accuracy, file-safe labels, and the distributed context."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

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


def datasets(ctx: RunContext):
    """(train, test) Datasets of the run: the digits, or the user's data streamed from disk."""
    workload = ctx.config.workload
    if workload is None or workload[1].dataset == "digits":
        return digits(ctx)
    if "user data" not in ctx.data:
        from ..workloads import load_split

        model_spec, spec = workload
        if not spec.channels and model_spec is not None and model_spec.mean is not None:
            import dataclasses

            spec = dataclasses.replace(spec, channels=len(model_spec.mean))
        if model_spec is not None and model_spec.input_size and not (spec.resize or spec.crop):
            import dataclasses

            spec = dataclasses.replace(spec, resize=model_spec.input_size, crop=model_spec.input_size)
        ctx.data["user data"] = (load_split(spec, spec.train_split), load_split(spec, spec.test_split))
    return ctx.data["user data"]


def names(ctx: RunContext) -> tuple[str, str]:
    """(model, data) as the report names them."""
    n = ctx.config.names()
    return n["model"], n["data"]


def new_model(ctx: RunContext) -> torch.nn.Module:
    cfg = ctx.config
    seed_everything(cfg.seed)
    workload = cfg.workload
    if workload is not None and workload[0] is not None:
        from ..workloads import build_model

        return build_model(workload[0]).to(ctx.device)
    return DigitsCNN(size=cfg.get("data", "size"), width=cfg.get("model", "width"),
                     hidden=cfg.get("model", "hidden")).to(ctx.device)


def models(ctx: RunContext) -> dict[str, torch.nn.Module]:
    """The models to evaluate: the trained ones, or (when ``train`` is not among the stages) the given one."""
    if not ctx.models:
        if ctx.config.workload is None or ctx.config.workload[0] is None:
            raise RuntimeError("without the train stage there is no model to evaluate: add 'train' to stages, or "
                               "give a [model] with a checkpoint")
        ctx.models[names(ctx)[0]] = new_model(ctx).eval()
    return ctx.models


def accuracy(model: torch.nn.Module, ds, device: torch.device, batch_size: int = 512) -> float:
    """Clean accuracy on ``ds``, streamed batch by batch (data-parallel under torchrun, summed over ranks)."""
    from ..modelstate import preserved
    from ..training import distributed as dist_utils
    from ..workloads import eval_loader

    dist = dist_utils.setup(device) if dist_utils.dist.is_initialized() else dist_utils.DistContext(device=device)
    counts = torch.zeros(2, dtype=torch.float64, device=device)  # on the device: NCCL reduces CUDA tensors only
    with preserved(model, mode=False), torch.no_grad():
        for x, y in eval_loader(ds, batch_size, dist.rank, dist.world_size):
            counts[0] += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
            counts[1] += len(y)
    dist_utils.all_reduce_(counts, dist)
    return float(counts[0] / counts[1])


def is_main(ctx: RunContext) -> bool:
    """False on ranks other than 0 of a torchrun job (they compute, rank 0 writes)."""
    from ..training import distributed as dist_utils

    return not dist_utils.dist.is_initialized() or dist_utils.dist.get_rank() == 0


def safe_label(label: str) -> str:
    """``label`` with every character outside [A-Za-z0-9_-] replaced by ``_``, at most 80 characters."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:80]
