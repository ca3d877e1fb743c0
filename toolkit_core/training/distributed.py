"""torch.distributed plumbing for :func:`toolkit_core.fit`: one process by default, DDP under torchrun.

``fit`` runs unchanged under ``torchrun --nproc_per_node N``: torchrun sets ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK``; :func:`setup` then initializes the process group (NCCL for CUDA devices, gloo
for CPU) unless the caller already did, and picks the device ``cuda:LOCAL_RANK`` on GPU machines.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist


@dataclasses.dataclass
class DistContext:
    """Where this process stands: its rank, the world size, its device, and who owns the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(device: str | torch.device | None, local_rank: int, distributed: bool) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
    return device


def setup(device: str | torch.device | None = None) -> DistContext:
    """Join (or create, under torchrun) the default process group and choose this process's device."""
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    initialized = dist.is_available() and dist.is_initialized()
    if not initialized and env_world <= 1:
        return DistContext(device=_pick_device(device, 0, False))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank, True)
    owns = False
    if not initialized:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    rank, world = dist.get_rank(), dist.get_world_size()
    if "LOCAL_RANK" not in os.environ:
        local_rank = rank
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, owns_group=owns)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_(t: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` or ``max``) when distributed; a no-op in one process.

    A CPU tensor on a CUDA run goes through the device (NCCL reduces CUDA tensors only) and back.
    """
    if ctx.distributed:
        work = t.to(ctx.device) if ctx.device.type == "cuda" and t.device.type != "cuda" else t
        dist.all_reduce(work, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        if work is not t:
            t.copy_(work)
    return t


def all_gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` as a list indexed by rank (``[obj]`` in one process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
