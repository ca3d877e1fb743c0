"""Progress for long loops: a rich bar on a terminal, plain periodic lines otherwise, nothing on ranks != 0.

One small API for every loop that may run longer than a few seconds (epochs, attack batches,
attribution batches, GAN steps, metric passes)::

    from toolkit_core.progress import progress, track

    with progress("robustness: pgd", total=len(loader)) as bar:
        for x, y in loader:
            ...
            bar.advance()                    # or bar.advance(n), bar.update(info="acc 0.91")

    for x, y in track(loader, "attribution"):  # the same, wrapping an iterable
        ...

How it shows (``mode``), chosen once per call from ``TORCHTRUST_PROGRESS`` (``auto`` by default):

* ``rich``: a live rich progress bar. Bars opened while another is shown join the same display
  (one live display at a time, so nested loops stack); a nested bar disappears when its loop ends.
* ``plain``: lines like ``robustness: pgd 12/40 (30%) 8.1s  acc 0.91``, the first after
  ``delay`` seconds (default 2) and then at most every ``interval`` seconds (default 10), plus one
  final line if any was printed: CI logs stay readable and short loops print nothing.
* ``off``: nothing.
* ``auto``: ``rich`` when the stream is a terminal, else ``plain``.

Under ``torch.distributed`` (or torchrun's ``RANK`` variable) only rank 0 shows anything. Pass
``enabled=False`` to silence one loop (e.g. a library call with ``progress=False``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

__all__ = ["Bar", "Tasks", "is_main_process", "mode", "progress", "track"]

T = TypeVar("T")

_MODES = ("auto", "rich", "plain", "off")
_live: Any = None  # the rich Progress being shown, shared by nested bars
_live_users = 0


def is_main_process() -> bool:
    """True unless this is a rank other than 0 of a distributed run (torch.distributed or torchrun's RANK)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def mode(stream: IO[str] | None = None) -> str:
    """The display mode for ``stream`` (default stdout): ``rich``, ``plain`` or ``off``."""
    chosen = os.environ.get("TORCHTRUST_PROGRESS", "auto").strip().lower() or "auto"
    if chosen not in _MODES:
        raise ValueError(f"TORCHTRUST_PROGRESS must be one of {', '.join(_MODES)}, got {chosen!r}")
    if not is_main_process():
        return "off"
    if chosen != "auto":
        return chosen
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "rich" if isatty is not None and isatty() else "plain"


class Bar:
    """A handle on one loop's progress: ``advance(n)``, ``update(total=..., info=...)``; ``done``, ``total``."""

    def __init__(self, description: str, total: int | None, how: str, stream: IO[str] | None,
                 delay: float, interval: float, leave: bool):
        self.description = description
        self.total = total
        self.done = 0
        self.info = ""
        self._mode = how
        self._stream = stream
        self._delay, self._interval, self._leave = delay, interval, leave
        self._t0 = time.perf_counter()
        self._last_line: float | None = None
        self._printed: tuple[int, str] | None = None
        self._task = None
        self._progress = None

    # ------------------------------------------------------------------ public
    def advance(self, n: int = 1) -> None:
        self.done += n
        self._show()

    def update(self, *, total: int | None = None, info: str | None = None, description: str | None = None) -> None:
        """Change the total, the trailing info text (e.g. running loss) or the description."""
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if description is not None:
            self.description = description
        self._show()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    # ------------------------------------------------------------------ display
    def _line(self) -> str:
        if self.total:
            count = f"{self.done}/{self.total} ({100.0 * self.done / self.total:.0f}%)"
        else:
            count = f"{self.done}"
        text = f"{self.description} {count} {self.elapsed:.1f}s"
        return f"{text}  {self.info}" if self.info else text

    def _print(self) -> None:
        stream = sys.stdout if self._stream is None else self._stream
        print(self._line(), file=stream, flush=True)
        self._last_line = time.perf_counter()
        self._printed = (self.done, self.info)

    def _show(self) -> None:
        if self._mode == "rich" and self._progress is not None:
            self._progress.update(self._task, completed=self.done, total=self.total,
                                  description=self.description, info=self.info)
        elif self._mode == "plain":
            now = time.perf_counter()
            due = self._t0 + self._delay if self._last_line is None else self._last_line + self._interval
            if now >= due:
                self._print()

    def _start(self) -> None:
        global _live, _live_users
        if self._mode != "rich":
            return
        if _live is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            console = Console(file=self._stream) if self._stream is not None else None
            _live = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                             console=console, transient=False)
            _live.start()
        _live_users += 1
        self._progress = _live
        self._task = _live.add_task(self.description, total=self.total, completed=self.done, info=self.info)

    def _finish(self) -> None:
        global _live, _live_users
        if self._mode == "rich" and self._progress is not None:
            _live_users -= 1
            if _live_users > 0 and not self._leave:
                self._progress.remove_task(self._task)
            if _live_users == 0:
                _live.stop()
                _live = None
            self._progress = None
        elif self._mode == "plain" and self._last_line is not None and self._printed != (self.done, self.info):
            self._print()  # a loop that printed anything also prints where it ended


@contextlib.contextmanager
def progress(description: str, total: int | None = None, *, enabled: bool = True, stream: IO[str] | None = None,
             delay: float = 2.0, interval: float = 10.0, leave: bool = False) -> Iterator[Bar]:
    """Show the progress of one loop (see the module docstring); yields a :class:`Bar`.

    ``total``: the number of steps (``None``: unknown, a counter is shown). ``stream``: where lines go
    (default stdout). ``delay``/``interval``: plain mode's first line and spacing, in seconds.
    ``leave``: keep a nested rich bar after its loop ends (the outermost bar always stays).
    """
    how = mode(stream) if enabled else "off"
    bar = Bar(description, total, how, stream, delay, interval, leave)
    bar._start()
    try:
        yield bar
    finally:
        bar._finish()


def track(iterable: Iterable[T], description: str, total: int | None = None, **kwargs: Any) -> Iterator[T]:
    """Iterate ``iterable`` showing progress; ``total`` defaults to ``len(iterable)`` when it has one."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress(description, total, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.advance()


class Tasks:
    """rich's ``add_task`` / ``update`` / ``console.print`` over :func:`progress` (for loops written for rich).

    Each ``add_task`` ends the previous task's bar (one bar per epoch, say); ``update(task, advance=n,
    stats=...)`` advances it and sets its trailing info; ``console.print`` prints a line (through the
    live display when one is shown). Use as a context manager: ``with Tasks(enabled) as bar: ...``.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bars: dict[int, tuple[Bar, contextlib.ExitStack]] = {}
        self.console = self

    def add_task(self, description: str, total: int | None = None, completed: int = 0, **fields: Any) -> int:
        for _, stack in self._bars.values():
            stack.close()
        stack = contextlib.ExitStack()
        bar = stack.enter_context(progress(description, total, enabled=self.enabled))
        bar.done = completed
        if fields.get("stats"):
            bar.info = str(fields["stats"])
        task = len(self._bars)
        self._bars[task] = (bar, stack)
        return task

    def update(self, task: int, advance: int = 0, **fields: Any) -> None:
        bar = self._bars[task][0]
        if "stats" in fields:
            bar.info = str(fields["stats"])
        bar.advance(advance)

    def print(self, *objects: Any) -> None:
        if not self.enabled or mode() == "off":
            return
        if _live is not None:
            _live.console.print(*objects)
        else:
            print(*objects, flush=True)

    def __enter__(self) -> Tasks:
        return self

    def __exit__(self, *exc: Any) -> None:
        for _, stack in self._bars.values():
            stack.close()
        self._bars.clear()
