"""Composed experiments: a config (TOML or Python) naming methods by their registered names.

    from toolkit_core import Experiment
    exp = Experiment.from_toml("my.toml")        # or Experiment.default(quick=True)
    results = exp.run(out="report")              # writes report/index.html and report/results.json
    results["robustness"]["table"]

From the command line: ``torchtrust run [CONFIG.toml] [--out DIR] [--quick]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import ConfigError, ExperimentConfig, MethodSpec, build_config, load_config
from .runner import Results, run_stages, save_json

__all__ = ["ConfigError", "Experiment", "ExperimentConfig", "MethodSpec", "Results", "run_from_cli"]


class Experiment:
    """An experiment: validated config + :meth:`run`."""

    def __init__(self, config: ExperimentConfig):
        self.config = config

    @classmethod
    def from_toml(cls, path: str | Path, *, quick: bool = False, device: str | None = None,
                  seed: int | None = None, precision: str | None = None) -> Experiment:
        """Read and validate a TOML file; every problem is raised at once in a :class:`ConfigError`."""
        return cls(load_config(path, quick=quick, device=device, seed=seed, precision=precision))

    @classmethod
    def from_dict(cls, config: dict[str, Any], *, quick: bool = False) -> Experiment:
        """Build from a dict with the TOML's structure (``{"attacks": [{"name": "pgd", "eps": 0.3}], ...}``)."""
        return cls(build_config(config, quick=quick))

    @classmethod
    def default(cls, *, quick: bool = False, device: str | None = None, seed: int | None = None,
                precision: str | None = None) -> Experiment:
        """The embedded default experiment: every installed method, by kind, on bundled data."""
        return cls(load_config(None, quick=quick, device=device, seed=seed, precision=precision))

    def run(self, out: str | Path = "torchtrust-report", progress: bool = True, force: bool = False) -> Results:
        """Run every stage (reusing finished ones in ``out``), write the report; return the results.

        ``out`` must be new, empty, or made by torchtrust (a ``.torchtrust`` marker); another non-empty
        folder is refused unless ``force=True``. One run at a time may write into a folder (a lock).
        ``progress``: print one line per stage start and end, progress bars in a terminal (plain lines
        every ~10 s otherwise), and the report's path at the end.
        """
        from .health import check_all
        from .outdir import locked, prepare_output
        from .over_seeds import FINISH
        from .report import write_report
        from .stages import STAGE_FUNCTIONS as fns

        missing = [s for s in self.config.stages if s not in fns]
        if missing:
            raise RuntimeError(f"stages {missing} are not available in this installation")
        _check_device(self.config.device)
        if os.environ.get("RANK", "0") != "0":  # torchrun: the other ranks compute; rank 0 owns the folder
            return run_stages(self.config, Path(out), fns, show_progress=progress)
        out = prepare_output(out, force=force)
        with locked(out):
            results = run_stages(self.config, out, fns, show_progress=progress, finish=FINISH)
            results.health = [f.to_dict() for f in check_all(results.stages)]
            save_json(results.to_dict(), out / "results.json")
            path = write_report(results, out)
        if progress:
            print(f"report: {path.resolve()}", flush=True)
        return results


def _check_device(device: str) -> None:
    """Raise a clear error when a CUDA device is asked for and there is none."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"device {device!r} was asked for but this machine has {torch.cuda.device_count()} "
                           "CUDA device(s)")


def run_from_cli(config: str | None, *, out_dir: str, device: str | None = None, quick: bool = False,
                 seed: int | None = None, force: bool = False, precision: str | None = None) -> Results:
    """``torchtrust run``: ``device``/``seed``/``precision`` override the config's only when given (not ``None``)."""
    exp = Experiment.from_toml(config, quick=quick, device=device, seed=seed, precision=precision) if config else \
        Experiment.default(quick=quick, device=device, seed=seed, precision=precision)
    if exp.config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            where = "--device cuda was given" if device == "cuda" else f"{config} sets device = \"cuda\""
            raise RuntimeError(f"{where} but CUDA is not available here; use --device cpu")
    return exp.run(out_dir, force=force)
