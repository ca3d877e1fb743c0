"""The output folder of a run: written only when it is ours, by one run at a time, keyed by what made it.

* **Ours or empty** (:func:`prepare_output`): a run writes into a folder that does not exist, is empty,
  or holds the marker file ``.torchtrust`` written by an earlier run. Any other non-empty folder (a
  user's own ``index.html``, ``results.json``, PNGs) is refused unless ``force=True`` (``--force``); a
  path that is a file is refused always.
* **One run at a time** (:func:`locked`): an exclusive ``flock`` on ``DIR/.torchtrust.lock`` for the
  whole run; a second concurrent run into the same folder stops at once with a message naming the
  holder's pid. The lock goes with the process (also on SIGKILL), so it never has to be cleaned up.
* **Keyed** (:func:`stage_key`, :func:`model_key`): every saved stage and trained model is stored
  under a hash of everything that determines it -- the config sections it reads, the seed, the method
  parameters, the versions of torchtrust and of every loaded plugin, and (for models) the training
  data itself. A rerun with anything different finds nothing under its key and computes afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import TorchtrustError

MARKER = ".torchtrust"
LOCK = ".torchtrust.lock"


class OutputFolderError(TorchtrustError, ValueError):
    """The output folder cannot be used: a file, someone else's files, or another run holds it."""


def prepare_output(out: str | os.PathLike, force: bool = False) -> Path:
    """Create ``out`` (or accept it) and write the marker; refuse a folder that is not ours."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"the output path {out} is a file, not a folder; give a folder with --out")
    marker = out / MARKER
    if out.is_dir() and not marker.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name != LOCK)
        if foreign and not force:
            shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
            raise OutputFolderError(
                f"the output folder {out} already holds files torchtrust did not write ({shown}); choose an empty "
                "or new folder, or pass --force (force=True) to write into it, overwriting files of the same names"
            )
    out.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        from .. import __version__

        marker.write_text(json.dumps({"written_by": "torchtrust", "version": __version__}) + "\n")
    return out


@contextlib.contextmanager
def locked(out: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``out`` for the block; raise at once if another run holds it."""
    path = Path(out) / LOCK
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise OutputFolderError(
                f"another torchtrust run (pid {holder}) is writing to {Path(out)}; wait for it to finish or "
                "choose another output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """torchtrust, torch, scikit-learn (the bundled data) and every loaded plugin distribution, with versions."""
    import sklearn
    import torch

    from .. import __version__
    from ..catalog import _manager

    out = {"torchtrust": __version__, "torch": torch.__version__, "scikit-learn": sklearn.__version__}
    for rec in _manager().plugins.values():
        if rec.status == "loaded":
            out[rec.distribution] = rec.version
    return out


def stage_key(config, stage: str) -> str:
    """Hash of the config of ``stage`` (seed, settings, methods) and the versions of what computes it."""
    return _hash({"config": config.fingerprint(stage), "versions": versions()})


def data_hash(*tensors) -> str:
    """Hash of the bytes of tensors (the training data of a model)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def model_key(config, spec: dict[str, Any], data: str) -> str:
    """Hash of what determines one trained model: seed, device, data/model/train settings, the defense
    and its parameters (with its attack), the versions, and the training data's own hash ``data``."""
    s = config.settings
    extra = {} if config.precision == "fp32" else {"precision": config.precision}
    return _hash({"seed": config.seed, "device": config.device, **extra, "data": s["data"], "model": s["model"],
                  "train": s["train"], "spec": spec, "versions": versions(), "data_hash": data})
