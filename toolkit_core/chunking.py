"""Split a large batch into chunks so that only one chunk's activations are alive at a time.

``attribute(model, x, ..., batch_size=None)`` and ``attack(model, x, y, batch_size=None)`` run the
method on ``x[i:i + batch_size]`` one chunk after the other and concatenate the results. The peak
memory then grows with the chunk, not with ``N``: on 32,000 digits the peak memory a gradient map,
FGSM or PGD adds drops from 1.65-1.78 GiB to 0.32-0.34 GiB, 0.19-0.21x (``benchmarks/chunking.py``,
docs/performance.md).

Per-sample methods give the same result chunked or not (each sample's map depends only on that
sample when the model is in eval mode); an attack that draws random numbers draws them per chunk.

Default chunk (:func:`default_batch_size`): as many samples as fit in :data:`CPU_INPUT_BUDGET` bytes of
input on the CPU, and in 1/256 of the free device memory on CUDA (the activations, gradients and
copies of a forward/backward pass take up to a few hundred times the input).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

#: Bytes of input per chunk on the CPU (4 MiB: 4,096 digits of 16x16, 6 ImageNet images of 224x224).
CPU_INPUT_BUDGET = 4 * 2**20
#: On CUDA a chunk's input may take this fraction of the free memory.
CUDA_FREE_FRACTION = 1 / 256


def default_batch_size(x: torch.Tensor) -> int:
    """Samples per chunk for ``x`` on its device (at least 1, at most ``len(x)``)."""
    per_sample = max(1, x[0].numel() * x.element_size()) if x.shape[0] else 1
    budget = CPU_INPUT_BUDGET
    if x.is_cuda:
        free, _ = torch.cuda.mem_get_info(x.device)
        budget = max(CPU_INPUT_BUDGET, int(free * CUDA_FREE_FRACTION))
    return int(max(1, min(x.shape[0], budget // per_sample)))


def check_batch_size(batch_size: object) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None (sized to the device), got {batch_size!r}")


def chunks(x: torch.Tensor, other: Any, batch_size: int | None) -> Iterator[tuple[torch.Tensor, Any]]:
    """``(x_chunk, other_chunk)`` pairs; ``other`` is split too when it holds one entry per sample.

    ``other`` (a target or labels) is split along its first axis when it is a 1-D tensor or a flat
    list of ``len(x)`` entries; anything else (``None``, an int, a single class) goes to every chunk as is.
    """
    check_batch_size(batch_size)
    n = x.shape[0]
    size = default_batch_size(x) if batch_size is None else batch_size
    if size >= n:
        yield x, other
        return
    per_sample = (isinstance(other, torch.Tensor) and other.dim() == 1 and other.shape[0] == n) or (
        isinstance(other, (list, tuple)) and len(other) == n and not any(isinstance(o, (list, tuple)) for o in other))
    for i in range(0, n, size):
        yield x[i:i + size], (other[i:i + size] if per_sample else other)
