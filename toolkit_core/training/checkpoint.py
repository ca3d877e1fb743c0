"""Atomic checkpoints and the RNG bookkeeping that makes ``resume`` bit-for-bit.

A checkpoint is one file, ``<checkpoint_dir>/last.pt``, written by rank 0 to a temporary file in
the same directory and moved into place with :func:`os.replace` (atomic on POSIX), so a crash or a
signal during the write never leaves a truncated checkpoint. It holds plain containers and tensors
only, so it loads with ``torch.load(..., weights_only=True)``.

:func:`load_file` is the one way torchtrust reads a ``.pt`` file: always ``weights_only=True`` (a
planted file cannot run code), and an empty, truncated, corrupt or foreign file is one
:class:`CheckpointError` line naming the file and what to do.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import TorchtrustError

CHECKPOINT_NAME = "last.pt"
FORMAT_VERSION = 2  # 2: the settings that determine the run are saved and checked on resume


class CheckpointError(TorchtrustError, ValueError):
    """A checkpoint file that cannot be used: empty, truncated, corrupt, foreign, or from another run."""


def load_file(path: str | os.PathLike, map_location: str | torch.device = "cpu", what: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors that name the file.

    Never unpickles arbitrary objects: a file holding anything but tensors and plain containers is
    refused (loading it could run code), never retried with the unsafe full unpickler. ``what``: what the
    user should do, ending each message (default: delete the file, torchtrust rewrites it).
    """
    path = Path(path)
    what = what or "delete it (or move it away) and run again; torchtrust rewrites it"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file; {what}")
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); {what}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the file
        import pickle

        text = str(exc)
        if isinstance(exc, pickle.UnpicklingError) and "weights_only" in text:
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain containers and was refused by "
                f"torch.load(weights_only=True) (loading it could run code): {what}"
            ) from None
        if isinstance(exc, (EOFError, OSError)) or "zip archive" in text or "central directory" in text \
                or "PytorchStreamReader" in text:
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({size} bytes); {what}") from None
        raise CheckpointError(f"checkpoint {path} could not be read ({type(exc).__name__}); {what}") from None


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """The state of every RNG training can touch: torch (CPU and CUDA), numpy, python, a loader's."""
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": _py_state_to_list(random.getstate()),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "loader": generator.get_state() if generator is not None else None,
    }
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_py_state_from_list(state["python"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state.get("loader") is not None:
        generator.set_state(state["loader"])


def _py_state_to_list(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _py_state_from_list(s: list) -> tuple:
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


def checkpoint_path(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace`` onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(
    checkpoint_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any] | None:
    """The last checkpoint in ``checkpoint_dir``, or ``None`` if there is none yet."""
    return read_checkpoint(checkpoint_path(checkpoint_dir), FORMAT_VERSION, "toolkit_core.fit", map_location)


def read_checkpoint(path: Path, format: int, writer: str, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (``None`` if absent), refused unless ``writer`` wrote it in ``format``."""
    if not path.exists():
        return None
    ckpt = load_file(path, map_location=map_location)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a torchtrust checkpoint; "
                              "delete it or use another checkpoint_dir")
    if ckpt.get("format") != format:
        raise CheckpointError(
            f"{path} was written by an incompatible version of {writer} (format {ckpt.get('format')!r}, "
            f"expected {format}); start a fresh run with resume=False or another checkpoint_dir"
        )
    return ckpt


def check_settings(saved: dict[str, Any] | None, wanted: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse to resume when a setting that determines the run differs from the checkpoint's."""
    saved = saved or {}
    diffs = [f"{k}={saved.get(k)!r} -> {v!r}" for k, v in wanted.items() if saved.get(k) != v]
    if diffs:
        raise CheckpointError(
            f"the checkpoint {path} belongs to another run ({'; '.join(diffs)}); resuming would mix the two. "
            "Pass the same settings to resume, or start afresh with resume=False or another checkpoint_dir"
        )
