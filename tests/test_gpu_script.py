"""benchmarks/gpu.py, the one script that runs every GPU check and benchmark: its plan and its budget
(fast, nothing run), and the whole script at toy sizes on the CPU (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["env", "kernels_check", "cifar10", "cifar10_bf16", "kernels", "attacks", "attribution", "pytest_cuda"]


def _gpu():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_plan_covers_every_check_and_fits_the_budget(tmp_path):
    gpu = _gpu()
    steps = gpu.plan("cuda", smoke=False, out=tmp_path)
    assert [s.name for s in steps] == STEPS
    cmds = {s.name: " ".join(s.argv) for s in steps}
    assert "benchmarks/kernels.py" in cmds["kernels"]
    assert "--device cuda" in cmds["attacks"] and "--device cuda" in cmds["attribution"]
    assert "--child cifar10" in cmds["cifar10"] and "--precision bf16" in cmds["cifar10_bf16"]
    rows = gpu.run_plan(steps, tmp_path, budget=480, device="cuda", dry_run=True)
    assert [r["status"] for r in rows] == ["planned"] * len(STEPS)
    assert all(0 < r["limit_s"] <= 480 for r in rows)
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
    # on a CPU the CUDA-only steps are skipped; a budget below 20 s starts nothing
    rows = gpu.run_plan(gpu.plan("cpu", True, tmp_path), tmp_path, budget=480, device="cpu", dry_run=True)
    assert {r["step"] for r in rows if r["status"] == "skipped"} == {"kernels", "pytest_cuda"}
    rows = gpu.run_plan(gpu.plan("cuda", False, tmp_path), tmp_path, budget=10, device="cuda", dry_run=True)
    assert all(r["status"] == "skipped" and r["why"].startswith("budget") for r in rows)


def test_cuda_without_a_gpu_is_refused_clearly(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "CUDA is not available here" in proc.stdout


@pytest.mark.slow
def test_smoke_run_on_cpu_writes_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--device", "cpu",
                           "--budget", "600", "--out", str(tmp_path)], capture_output=True, text=True, timeout=700)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    status = {r["step"]: r["status"] for r in summary["steps"]}
    assert status == {**dict.fromkeys(STEPS, "ok"), "kernels": "skipped", "pytest_cuda": "skipped"}
    cifar = json.loads((tmp_path / "cifar10.json").read_text())
    assert cifar["rc"] == 0 and cifar["images"] == [64, 32] and cifar["wall_s"] > 0
    assert set(cifar["attacks"]) == {"fgsm", "pgd"} and 0 <= cifar["clean_accuracy"] <= 1
    assert (tmp_path / "cifar10-report" / "index.html").exists()
    assert "kernels checked on cpu" in (tmp_path / "kernels_check.log").read_text()
    assert "float32 example(s), 0 failed" in (tmp_path / "kernels_check.log").read_text()
    assert (tmp_path / "summary.txt").read_text().count("| ok |") == len(STEPS) - 2
