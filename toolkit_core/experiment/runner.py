"""Run an experiment stage by stage; every finished stage is saved, so an interrupted run resumes.

Layout of the output folder::

    DIR/index.html          the report (self-contained: images embedded)
    DIR/results.json        every stage's numbers, the config, versions
    DIR/*.png               the figures
    DIR/state/<stage>.json  a finished stage (reused by a rerun with the same key)
    DIR/state/models/       trained models (reused per model, keyed), training checkpoints (keyed)
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

#: Stages whose models are tiny: one thread is as fast on an idle machine and far faster on a busy one.
SINGLE_THREADED = frozenset({"train", "robustness", "generative", "metrics"})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclasses.dataclass
class RunContext:
    """What every stage sees."""

    config: ExperimentConfig
    out: Path
    progress: Any = None  # an ExitStack holding this stage's progress bars (toolkit_core.progress), or None
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
        """A progress bar kept until the stage ends (no-op without progress); returns an advance() callable."""
        if self.progress is None:
            return lambda n=1: None
        from .. import progress as tp

        return self.progress.enter_context(tp.progress(description, total, leave=True)).advance


@dataclasses.dataclass
class Results:
    """The outcome of a run: per-stage numbers, figures, timings; prints and serializes."""

    config: dict[str, Any]
    stages: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    resumed: list[str] = dataclasses.field(default_factory=list)
    out: str = ""
    rank: int = 0  # under torchrun: the rank these results are from (rank 0 writes the report)

    def __getitem__(self, stage: str) -> dict[str, Any]:
        return self.stages[stage]

    def to_dict(self) -> dict[str, Any]:
        import platform

        return {"config": self.config, "stages": self.stages, "timings_s": self.timings, "resumed": self.resumed,
                "versions": {"python": platform.python_version(), "torch": torch.__version__}}

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=2, sort_keys=True)

    def __str__(self) -> str:
        lines = [f"torchtrust experiment: {len(self.stages)} stage(s) in {sum(self.timings.values()):.0f} s"]
        for name, res in self.stages.items():
            lines.append(f"  {name:12s} {self.timings.get(name, 0):6.1f} s  {res.get('summary', '')}")
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
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True))
    tmp.replace(path)


def run_stages(config: ExperimentConfig, out: Path, stage_fns: dict[str, Callable[[RunContext], dict]],
               show_progress: bool = True) -> Results:
    out.mkdir(parents=True, exist_ok=True)
    results = Results(config=config.to_dict(), out=str(out))
    from .. import progress as tp
    from ..training import distributed as du

    dist = du.setup(config.device)  # under torchrun: join the process group (gloo on CPU, NCCL on GPU)
    try:
        return _run_stages(config, out, stage_fns, show_progress, results, dist, tp)
    finally:
        du.teardown(dist)


#: Stages that run on rank 0 alone under torchrun (the others skip them): small samples, or metrics
#: that need the whole test set at once. ``train`` (DDP) and ``robustness`` (sharded) use every rank.
RANK0_ONLY = frozenset({"attribution", "generative", "metrics"})


def _run_stages(config, out, stage_fns, show_progress, results, dist, tp) -> Results:
    from ..training import distributed as du
    from .outdir import stage_key

    with tp.progress("stages", len(config.stages), enabled=show_progress, leave=True) as bar:
        ctx = RunContext(config, out)
        stage_bar = bar.advance
        for stage in config.stages:
            state_file = ctx.state / f"{stage}.json"
            fingerprint = stage_key(config, stage)
            saved = None
            if dist.is_main and state_file.exists():
                try:
                    saved = json.loads(state_file.read_text())
                except (ValueError, OSError):  # a damaged state file is recomputed, never trusted
                    saved = None
            if dist.distributed:  # rank 0 decides what is reused; every rank follows
                box = [saved]
                du.dist.broadcast_object_list(box, src=0)
                saved = box[0]
            if not dist.is_main and stage in RANK0_ONLY:
                stage_bar()
                continue
            if isinstance(saved, dict):
                if saved.get("fingerprint") == fingerprint and stage != "train":
                    results.stages[stage] = saved["results"]
                    results.timings[stage] = saved.get("time_s", 0.0)
                    results.resumed.append(stage)
                    stage_bar()
                    continue
            seed_everything(config.seed)
            t0 = time.perf_counter()
            try:
                with torch_threads(1 if stage in SINGLE_THREADED else None), contextlib.ExitStack() as bars:
                    ctx.progress = bars if show_progress else None
                    res = stage_fns[stage](ctx)
            except Exception as exc:
                raise RuntimeError(f"stage '{stage}' failed: {exc}\n{traceback.format_exc()}") from exc
            elapsed = time.perf_counter() - t0
            res = _jsonable(res)
            if stage == "train" and ctx.data.get("reused_models"):
                results.resumed.append(stage)
            if dist.is_main:
                save_json({"fingerprint": fingerprint, "results": res, "time_s": elapsed}, state_file)
            results.stages[stage] = res
            results.timings[stage] = elapsed
            stage_bar()
    results.rank = dist.rank
    return results
