"""How many CPU threads torch uses, for the duration of a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: unchanged); restore the count after.

    Tiny models (the digits CNN, toy MLPs) are as fast on one thread on an idle machine and many times
    faster on a shared one, where extra threads spin waiting for a core.
    """
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
