"""The one training runtime shared by :func:`toolkit_core.fit` and :func:`toolkit_core.train_gan`.

A :class:`Runtime` is the environment of one training run:

* **processes and device**: joins (or, under ``torchrun``, creates) the process group and picks this
  rank's device (:func:`toolkit_core.training.distributed.setup`); left again on exit;
* **seeding**: python, numpy and torch from one seed (``seed + rank`` where each rank must draw its
  own noise);
* **resume**: reads the run's checkpoint file (``torch.load(weights_only=True)``), refusing another
  format or another number of processes with an error that says what to do;
* **checkpoints**: gathers every rank's RNG state (:func:`~toolkit_core.training.checkpoint.capture_rng`)
  and writes the file atomically from rank 0 (:func:`~toolkit_core.training.checkpoint.save_atomic`),
  then waits for every rank;
* **progress**: a :mod:`toolkit_core.progress` bar, shown on rank 0 only;
* **DDP**: wraps a model in ``DistributedDataParallel`` when distributed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import distributed as dist_utils
from .checkpoint import capture_rng, read_checkpoint, save_atomic


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global RNGs with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Runtime:
    """The environment of one training run (see the module docstring); use it as a context manager.

    ``checkpoint``: the run's checkpoint file (``None``: no checkpoints); ``format``: the version its
    writer stamps into it; ``writer``: the function's name, for error messages.
    """

    def __init__(self, device: str | torch.device | None, checkpoint: Path | None, format: int, writer: str):
        self.ctx = dist_utils.setup(device)
        self.checkpoint, self.format, self.writer = checkpoint, format, writer

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        dist_utils.teardown(self.ctx)

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    def seed(self, seed: int, per_rank: bool = True) -> None:
        """Seed every global RNG with ``seed`` (``seed + rank`` when ``per_rank``)."""
        seed_everything(seed + (self.ctx.rank if per_rank else 0))

    def load(self) -> dict[str, Any] | None:
        """The run's checkpoint, or ``None`` when there is none yet (or checkpoints are off)."""
        path = self.checkpoint
        ckpt = None if path is None else read_checkpoint(path, self.format, self.writer)
        if ckpt is None:
            return None
        if ckpt["world_size"] != self.ctx.world_size:
            raise RuntimeError(
                f"the checkpoint {path} was written by {ckpt['world_size']} process(es), this run has "
                f"{self.ctx.world_size}; resume with the same number of processes"
            )
        return ckpt

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (``[obj]`` in one process)."""
        return dist_utils.all_gather_object(obj, self.ctx)

    def save(self, state: dict[str, Any], generator: torch.Generator | None = None) -> None:
        """Write ``state`` plus the format, the world size and every rank's RNG state (``"rng"``, with the
        state of ``generator``, e.g. the loader's) to the checkpoint file; a no-op without one.
        Every rank must call it."""
        if self.checkpoint is None:
            return
        rngs = self.gather(capture_rng(generator))
        if self.ctx.is_main:
            save_atomic({"format": self.format, "world_size": self.ctx.world_size, "rng": rngs, **state},
                        self.checkpoint)
        dist_utils.barrier(self.ctx)

    def broadcast(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers of ``module`` to every rank (a no-op in one process)."""
        if self.ctx.distributed:
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def average_gradients(self, module: nn.Module) -> None:
        """Average the gradients of ``module`` over ranks (a no-op in one process); for loops that cannot
        use :meth:`wrap`, e.g. a GAN whose generator step back-propagates through the discriminator."""
        if self.ctx.distributed:
            for p in module.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                    p.grad /= self.ctx.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in ``DistributedDataParallel`` when distributed, else ``model`` itself."""
        if not self.ctx.distributed:
            return model
        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def progress(self, description: str, total: int, enabled: bool):
        """A :func:`toolkit_core.progress.progress` bar (shown on rank 0 only, and only if ``enabled``)."""
        from ..progress import progress

        return progress(description, total, enabled=enabled and self.ctx.is_main)
