"""Run an experiment stage by stage; every finished stage is saved, so an interrupted run resumes.

Layout of the output folder::

    DIR/index.html          the report (self-contained: images embedded)
    DIR/results.json        every stage's numbers, the config, versions
    DIR/*.png               the figures
    DIR/state/<stage>.json  a finished stage (reused by a rerun with the same key)
    DIR/state/models/       trained models (reused per model, keyed), training checkpoints (keyed)
    DIR/seeds/seed<N>/      the same for each further seed of the seeded stages
    DIR/.torchtrust         marker: the folder was made by torchtrust (see :mod:`.outdir`)
    DIR/.torchtrust.lock    held by the running run; a second concurrent run is refused

Every saved stage is keyed by :func:`~toolkit_core.experiment.outdir.stage_key` (the stage's config,
seed, methods and parameters, the versions of torchtrust and every plugin); a saved stage whose key
differs is computed afresh, never reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..threads import torch_threads
from .config import ExperimentConfig

#: Stages whose models are tiny on the embedded digits: one thread is as fast on an idle machine and far
#: faster on a busy one (a full run's datasets stage: 4 s on a quiet machine, 145 s with torch's two threads
#: while another job ran). A run on the user's own model and data ([model]/[data]) keeps torch's thread count.
SINGLE_THREADED = frozenset({"train", "robustness", "generative", "metrics", "generalization", "datasets", "detectors",
                             "patches"})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclasses.dataclass
class RunContext:
    """What every stage sees."""

    config: ExperimentConfig
    out: Path
    progress: Any = None  # a :class:`Console`, or None
    models: dict[str, torch.nn.Module] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def state(self) -> Path:
        path = self.out / "state"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    def figure(self, name: str) -> Path:
        return self.out / f"{name}.png"

    def task(self, description: str, total: int):
        """A progress task (no-op without a console); returns an advance() callable."""
        if self.progress is None:
            return lambda n=1: None
        return self.progress.task(description, total)


class Console:
    """What a run prints: one line per stage start and end, and progress in between.

    Progress bars come from :mod:`toolkit_core.progress` (a rich bar in a terminal, plain periodic lines
    elsewhere; ``TORCHTRUST_PROGRESS``); a stage's bars close when it ends. Outside a terminal a ticker
    also prints one line for the running stage every ``every`` seconds (``TORCHTRUST_PROGRESS_SECONDS``,
    default 10), so a stage that works a long time between two steps of its bars still shows it is alive.
    """

    def __init__(self, stream=None, every: float | None = None):
        import os

        from .. import progress as tp

        self.stream = stream
        self.every = float(os.environ.get("TORCHTRUST_PROGRESS_SECONDS", 10)) if every is None else every
        self.mode = tp.mode(stream)
        self._bars: contextlib.ExitStack | None = None
        self._ticker = None
        self._stop = None
        self._tasks: dict[int, Any] = {}
        self._overall: contextlib.ExitStack | None = None
        self._stages_bar = None
        self.stage: str | None = None
        self._stage_t0 = 0.0

    def __enter__(self) -> Console:
        if self.mode == "plain" and self.every > 0:
            import threading

            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="torchtrust-progress")
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.start_stage(None)
        if self._overall is not None:
            self._overall.close()
            self._overall = None
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            stage = self.stage
            if stage is None:
                continue
            tasks = "; ".join(f"{b.description} {b.done}/{b.total}" for b in list(self._tasks.values())
                              if b.total is None or b.done < b.total)
            self.line(f"  {stage}: running for {time.perf_counter() - self._stage_t0:.0f} s"
                      + (f" ({tasks})" if tasks else ""))

    def expect(self, stages: int) -> None:
        """In a terminal, an overall ``stages`` bar under the stage lines (``stages`` runs expected)."""
        from .. import progress as tp

        if self.mode == "rich" and self._overall is None:
            self._overall = contextlib.ExitStack()
            self._stages_bar = self._overall.enter_context(tp.progress("stages", stages, stream=self.stream,
                                                                       leave=True))

    def stage_done(self) -> None:
        if self._stages_bar is not None:
            self._stages_bar.advance()

    def start_stage(self, name: str | None) -> None:
        """Close the previous stage's bars; ``name`` is what the ticker reports (None: between stages)."""
        if self._bars is not None:
            self._bars.close()
        self._bars = contextlib.ExitStack() if name is not None else None
        self._tasks.clear()
        self.stage, self._stage_t0 = name, time.perf_counter()

    def line(self, text: str) -> None:
        if self.mode != "off":
            import sys

            print(text, file=self.stream or sys.stdout, flush=True)

    def task(self, description: str, total: int):
        from .. import progress as tp

        if self._bars is None:
            self.start_stage(self.stage or description)
        bar = self._bars.enter_context(tp.progress(description, total, stream=self.stream, leave=False))
        self._tasks[len(self._tasks)] = bar
        return bar.advance


@dataclasses.dataclass
class Results:
    """The outcome of a run: per-stage numbers, figures, timings; prints and serializes."""

    config: dict[str, Any]
    stages: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    resumed: list[str] = dataclasses.field(default_factory=list)
    out: str = ""
    ran: list[str] = dataclasses.field(default_factory=list)  # stages computed in this call (not resumed)
    health: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # see .health
    rank: int = 0  # under torchrun: the rank these results are from (rank 0 writes the report)

    def __getitem__(self, stage: str) -> dict[str, Any]:
        return self.stages[stage]

    def to_dict(self) -> dict[str, Any]:
        import platform

        return {"config": self.config, "stages": self.stages, "timings_s": self.timings, "resumed": self.resumed,
                "ran": self.ran, "health": self.health,
                "versions": {"python": platform.python_version(), "torch": torch.__version__}}

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=2, sort_keys=True)

    def __str__(self) -> str:
        lines = [f"torchtrust experiment: {len(self.stages)} stage(s)"]
        for name, res in self.stages.items():
            took = "resumed " if name in self.resumed and name not in self.ran else \
                f"{self.timings.get(name, 0):6.1f} s"
            lines.append(f"  {name:12s} {took:>8s}  {res.get('summary', '')}")
        for flag in self.health:
            lines.append(f"  ! {flag['message']}")
        if self.out:
            lines.append(f"report: {Path(self.out) / 'index.html'}")
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and obj != obj:  # NaN -> null, valid JSON
        return None
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    return obj


def save_json(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2))  # insertion order: a resumed stage shows as it ran
    tmp.replace(path)


def run_stages(config: ExperimentConfig, out: Path, stage_fns: dict[str, Callable[[RunContext], dict]],
               show_progress: bool | Console = True,
               finish: dict[str, Callable[[RunContext, dict, dict], dict]] | None = None) -> Results:
    """Run ``config.stages`` in order; the seeded stages once per seed, then averaged over seeds.

    The first seed runs every stage (its models feed the unseeded stages, its figures are kept); each
    further seed runs the seeded stages in ``out/seeds/seed<N>/``. ``finish[stage](ctx, aggregated, done)``
    (``done``: the stages aggregated before it) then redraws a seeded stage's figures and summary from
    the means and spreads.
    """

    out.mkdir(parents=True, exist_ok=True)
    results = Results(config=config.to_dict(), out=str(out))
    from ..training import distributed as du

    dist = du.setup(config.device)  # under torchrun: join the process group (gloo on CPU, NCCL on GPU)
    try:
        return _run_stages(config, out, stage_fns, show_progress, finish, results, dist)
    finally:
        du.teardown(dist)


#: Stages that run on rank 0 alone under torchrun (the others skip them): small samples, or metrics
#: that need the whole test set at once. ``train`` (DDP) and ``robustness`` (sharded) use every rank.
RANK0_ONLY = frozenset({"attribution", "generative", "metrics", "generalization"})


def _run_stages(config, out, stage_fns, show_progress, finish, results, dist) -> Results:
    from .aggregate import aggregate
    from .config import SEEDED_STAGES

    console = show_progress if isinstance(show_progress, Console) else Console() if show_progress else None
    seeds = [config.seed + i for i in range(config.seeds)]
    seeded = [s for s in config.stages if s in SEEDED_STAGES]
    per_seed: dict[str, list[dict]] = {}
    with console if console is not None else contextlib.nullcontext():
        if console is not None and config.pulled_in:
            for need, by in config.pulled_in.items():
                console.line(f"{need}: added because {', '.join(by)} need(s) it")
        if console is not None and config.precision_note():
            console.line(config.precision_note())
        ctx = RunContext(config, out, console)
        runs = [(seeds[0], ctx, list(config.stages))]
        for seed in seeds[1:]:
            runs.append((seed, RunContext(dataclasses.replace(config, seed=seed), out / "seeds" / f"seed{seed}",
                                          console), seeded))
        if console is not None:
            console.expect(sum(len(stages) for _, _, stages in runs))
        for seed, run_ctx, stages in runs:
            for stage in stages:
                one = _run_one(run_ctx, stage, stage_fns[stage], console,
                               f" (seed {seed})" if len(seeds) > 1 else "", dist)
                if one is None:  # a rank-0-only stage on another rank
                    continue
                res, elapsed, resumed = one
                results.timings[stage] = results.timings.get(stage, 0.0) + elapsed
                if resumed and stage not in results.resumed:
                    results.resumed.append(stage)
                if not resumed and stage not in results.ran:
                    results.ran.append(stage)
                per_seed.setdefault(stage, []).append(res)
        for stage in config.stages:
            if stage not in per_seed:
                continue
            res = per_seed[stage][0]
            if stage in seeded:
                res = aggregate(per_seed[stage], seeds)
                if finish and stage in finish and dist.is_main:  # rank 0 draws the figures
                    res = finish[stage](ctx, res, results.stages)
            results.stages[stage] = res
    results.rank = dist.rank
    return results


def _run_one(ctx: RunContext, stage: str, fn: Callable[[RunContext], dict], console: Console | None,
             tag: str, dist) -> tuple[dict, float, bool] | None:
    """(result, seconds, resumed) of one stage on ``ctx``'s seed, reusing its saved result if unchanged.

    Under torchrun rank 0 decides what is reused and every rank follows; a rank-0-only stage
    (:data:`RANK0_ONLY`) returns ``None`` on the other ranks; only rank 0 writes the saved state.
    """
    from ..training import distributed as du
    from .outdir import stage_key

    config = ctx.config
    state_file = ctx.state / f"{stage}.json"
    fingerprint = stage_key(config, stage)
    saved = None
    if dist.is_main and state_file.exists() and stage != "train":
        try:
            saved = json.loads(state_file.read_text())
        except (ValueError, OSError):  # a damaged state file is recomputed, never trusted
            saved = None
    if dist.distributed:  # rank 0 decides what is reused; every rank follows
        box = [saved]
        du.dist.broadcast_object_list(box, src=0)
        saved = box[0]
    if not dist.is_main and stage in RANK0_ONLY:
        return None
    if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint:
        if console is not None:
            console.line(f"{stage}{tag}: resumed from {state_file}")
            console.stage_done()
        return saved["results"], float(saved.get("time_s", 0.0)), True  # the time it took when it ran
    if console is not None:
        console.line(f"{stage}{tag}: started")
        console.start_stage(f"{stage}{tag}")
    seed_everything(config.seed)
    t0 = time.perf_counter()
    try:
        with torch_threads(1 if stage in SINGLE_THREADED and config.workload is None else None):
            res = fn(ctx)
    except Exception as exc:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (no message)"
        raise RuntimeError(f"stage '{stage}' failed: {what}\n{traceback.format_exc()}") from exc
    elapsed = time.perf_counter() - t0
    res = _jsonable(res)
    resumed = stage == "train" and bool(ctx.data.get("reused_models"))
    if dist.is_main:
        save_json({"fingerprint": fingerprint, "results": res, "time_s": elapsed}, state_file)
    if console is not None:
        console.start_stage(None)
        what = "resumed (saved models)" if resumed else "done"
        console.line(f"{stage}{tag}: {what} in {elapsed:.1f} s - {res.get('summary', '')}")
        console.stage_done()
    return res, elapsed, resumed
