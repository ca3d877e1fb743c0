"""Every GPU check and benchmark in one go, under a time budget (default 480 s), figures to one folder.

    python benchmarks/gpu.py                          # on a CUDA machine; figures to $OUT or ./gpu-figures
    python benchmarks/gpu.py --out figs --budget 420
    python benchmarks/gpu.py --dry-run                # print the plan (commands, time limits), run nothing
    python benchmarks/gpu.py --smoke --device cpu     # the same steps at toy sizes on a CPU (tests the script)

Steps, in priority order; each runs in its own process with a time limit (its own, capped by what is
left of ``--budget``), writes ``<out>/<step>.log``, and a step that no longer fits is recorded as
skipped rather than started:

1. ``env``: torch, CUDA, the device's name, Triton's version, ``nvidia-smi``.
2. ``kernels_check``: every Triton kernel against its PyTorch reference *on the device* (the tests
   check them only in Triton's CPU interpreter), on the inputs each kernel declares
   (``Kernel.examples``), within :data:`toolkit_core.kernels.TOLERANCES`: float32 decides (what the
   kernels' tests promise); float64 is reported as information (in Triton's CPU interpreter 7 of 50
   float64 examples miss the 1e-10 tolerance: LRP's stabilized_divide by 9e-3 on one example, mmc's
   knn and pgd's l2_step by ~1e-7, i.e. they compute in float32). In ``--smoke`` on a CPU it runs the
   interpreter (``TRITON_INTERPRET=1``) to exercise the same code.
3. ``cifar10``: ``torchtrust run examples/cifar10.toml --device cuda`` as shipped (ResNet-18, CIFAR
   stem, 2 epochs on 5,000 images, FGSM + PGD-10 on 1,000, gradient and LRP on 8 samples, maxent), on
   a generated CIFAR-10 of 5,000 + 1,000 images in the real on-disk format, timed; ``results.json``
   and the report are kept. ``--smoke``: 64 + 32 images, train and robustness stages, 1 epoch, the
   standard ResNet stem, no certifiers.
4. ``cifar10_bf16``: the same with ``--precision bf16`` (skipped if the CLI has no ``--precision``).
5. ``kernels``: ``benchmarks/kernels.py`` (Triton vs PyTorch time, bandwidth share; CUDA only).
6. ``attacks``: ``benchmarks/attacks.py --device cuda`` with a small budget (PGD-10 batch 256 against
   the forward+backward floor; AutoAttack with 20 iterations and 500 Square queries against the sum
   of its parts).
7. ``attribution``: ``benchmarks/attribution.py --device cuda`` on ResNet-50 and VGG-16 at 224x224,
   batch 16 (time and CUDA memory as ratios to gradient saliency).
8. ``pytest_cuda``: the tests that only run with CUDA (fp16 training with a gradient scaler, CUDA
   kernel dispatch).

``<out>/summary.json`` and ``<out>/summary.txt`` list every step's status, time and headline lines;
copy the figures into docs/performance.md. Needs the project's environment on the GPU machine (torch
with CUDA, torchvision, triton, the plugins: ``pip install -r requirements.txt``); nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass
class Step:
    name: str
    argv: list[str]
    limit_s: int
    cuda_only: bool = False
    env: dict[str, str] = field(default_factory=dict)
    #: lines of the log that carry the figures (substrings)
    headline: tuple[str, ...] = ()


def plan(device: str, smoke: bool, out: Path) -> list[Step]:
    """The steps, in priority order (see the module docstring)."""
    me = [PY, str(Path(__file__).resolve())]
    dev = ["--device", device]
    size = ["--smoke"] if smoke else []
    steps = [
        Step("env", me + ["--child", "env"] + dev, 30, headline=("torch", "device", "triton")),
        Step("kernels_check", me + ["--child", "kernels_check"] + dev + size, 90 if smoke else 60,
             env={"TRITON_INTERPRET": "1"} if smoke and not device.startswith("cuda") else {},
             headline=("kernels checked", "FAILED")),
        Step("cifar10", me + ["--child", "cifar10", "--out", str(out)] + dev + size, 200,
             headline=("cifar10",)),
        Step("cifar10_bf16", me + ["--child", "cifar10", "--precision", "bf16", "--out", str(out)] + dev + size,
             120, headline=("cifar10",)),
        Step("kernels", [PY, str(ROOT / "benchmarks" / "kernels.py")], 60, cuda_only=True,
             headline=("plain copy", "::")),
        Step("attacks", [PY, str(ROOT / "benchmarks" / "attacks.py")] + dev + (
            ["--repeats", "1", "--batch", "4", "--size", "16", "--steps", "2", "--aa-batch", "4", "--aa-steps", "2",
             "--aa-queries", "10", "--aa-repeats", "1"] if smoke else
            ["--repeats", "5", "--batch", "256", "--aa-batch", "128", "--aa-steps", "20", "--aa-queries", "500",
             "--aa-repeats", "1"]), 90, headline=("/ floor", "/ sum of parts", "/ torchattacks")),
        Step("attribution", [PY, str(ROOT / "benchmarks" / "attribution.py")] + dev + (
            ["--models", "resnet18", "--size", "32", "--batch", "1", "--repeats", "1", "--methods", "gbp",
             "lrp_epsilon", "--no-memory"] if smoke else
            ["--models", "resnet50", "vgg16", "--batch", "16", "--repeats", "3"]), 90,
            headline=("saliency", "lrp", "gbp", "rectgrad", "deconvnet", "epsilon")),
        Step("pytest_cuda", [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *(str(ROOT / "tests" / t) for t in ("test_precision.py", "test_workloads_run.py",
                                                                 "test_kernels.py")),
                             "-k", "cuda or fp16"], 60, cuda_only=True, headline=("passed", "failed", "skipped")),
    ]
    return steps


# --------------------------------------------------------------------------- children (one process each)


def child_env(device: str) -> int:
    import torch

    print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"device cuda:{i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
    else:
        print(f"device: none with CUDA; running on {device}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton: not installed")
    try:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20)
        print(smi.stdout)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"nvidia-smi: {type(e).__name__}")
    return 0


def child_kernels_check(device: str) -> int:
    """Every Triton kernel against its reference on ``device`` (declared examples, TOLERANCES)."""
    import torch

    import toolkit_core as tt
    from toolkit_core import kernels

    if not kernels.triton_available():
        print("triton is not installed: no kernel to check")
        return 0
    for kind in ("attribution", "attack", "defense", "prior", "metric"):
        for name in tt.list_methods(kind):
            try:
                _ = tt.get_info(name).cls  # importing the plugin declares its kernels
            except Exception as e:  # noqa: BLE001 - report, keep going
                print(f"{name}: import failed ({type(e).__name__}: {e})")
    import toolkit_core.features  # noqa: F401 - declares the core's kernel

    bad = n = info_bad = 0
    for name, k in sorted(kernels.all_kernels().items()):
        if not k.has_triton or name.startswith("tt_test::"):
            continue
        for dtype in (torch.float32, torch.float64):
            atol, rtol = kernels.TOLERANCES[dtype]
            try:
                examples = k.examples(dtype, device)
            except Exception as e:  # noqa: BLE001 - a kernel may support float32 only
                print(f"{name} {dtype}: no examples ({type(e).__name__})")
                continue
            for args in examples:
                try:
                    ref, tri = k.reference(*args), k.triton(*args)
                except Exception as e:  # noqa: BLE001
                    print(f"{name} {dtype}: FAILED to run: {type(e).__name__}: {str(e)[:200]}")
                    bad += 1
                    continue
                ref = ref if isinstance(ref, (tuple, list)) else (ref,)
                tri = tri if isinstance(tri, (tuple, list)) else (tri,)
                ok = len(ref) == len(tri) and all(
                    a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol)
                    for a, b in zip(ref, tri))
                err = max(float((a.double() - b.double()).abs().max()) if a.shape == b.shape else float("inf")
                          for a, b in zip(ref, tri))
                shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
                if dtype == torch.float32:
                    print(f"{name} float32 {shapes}: max abs err {err:.3g} {'ok' if ok else 'FAILED'}")
                    n += 1
                    bad += not ok
                else:  # the kernels' own tests promise float32 (a few float64 too); reported, not judged
                    print(f"{name} float64 {shapes}: max abs err {err:.3g} {'ok' if ok else 'differs'} (information)")
                    info_bad += not ok
    print(f"kernels checked on {device}: {n} float32 example(s), {bad} failed; float64 beyond its tolerance "
          f"in {info_bad} example(s) (information)")
    return 1 if bad else 0


def child_cifar10(device: str, smoke: bool, precision: str, out: Path) -> int:
    """Generate a CIFAR-10 in the on-disk format and time ``torchtrust run examples/cifar10.toml``."""
    from toolkit_core.workloads import synthetic

    label = "cifar10" + ("" if precision == "fp32" else f"_{precision}")
    if precision != "fp32":
        helptext = subprocess.run([PY, "-m", "registry.cli", "run", "--help"], capture_output=True, text=True,
                                  cwd=ROOT).stdout
        if "--precision" not in helptext:
            print(f"{label}: skipped, this torchtrust run has no --precision option")
            return 0
    text = (ROOT / "examples" / "cifar10.toml").read_text()
    n_train, n_test = (64, 32) if smoke else (5000, 1000)
    if smoke:
        lines = []
        for line in text.splitlines():
            key = line.split("=")[0].strip()
            if key == "stages":
                line = 'stages = ["train", "robustness"]'
            elif key == "epochs":
                line = "epochs = 1"
            elif key == "train_subset":
                line = f"train_subset = {n_train}"
            elif key == "test_subset":
                line = f"test_subset = {n_test}"
            elif key == "batch_size":
                line = "batch_size = 32"
            elif key == "steps":
                line = "steps = 2"
            elif key == "small_input":  # the standard stem: 16x fewer activations than the CIFAR stem
                line = "small_input = false"
            elif key == "defenses":  # and no certifiers (randomized smoothing: most of a CPU run's time)
                line += "\ncertifiers = []"
            lines.append(line)
        text = "\n".join(lines) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthetic.write_cifar10(Path(tmp) / "data", n_train, n_test)
        gen_s = time.perf_counter() - t0
        (Path(tmp) / "cifar10.toml").write_text(text)
        report = out / f"{label}-report"
        cmd = [PY, "-m", "registry.cli", "run", "cifar10.toml", "--device", device, "--out", str(report), "--force"]
        if precision != "fp32":
            cmd += ["--precision", precision]
        print("$ " + shlex.join(cmd))
        env = {**os.environ, "TORCHTRUST_PROGRESS": "plain", "PYTHONPATH": str(ROOT)}
        sys.stdout.flush()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env)  # its output goes straight to this step's log
        wall = time.perf_counter() - t0
    figures = {"images": [n_train, n_test], "generate_s": round(gen_s, 2), "wall_s": round(wall, 2),
               "device": device, "precision": precision, "rc": proc.returncode}
    results = report / "results.json"
    if proc.returncode == 0 and results.exists():
        res = json.loads(results.read_text())
        figures["stages"] = sorted(res.get("stages", {}))
        for key in ("timings_s", "timings", "seconds"):
            if key in res:
                figures[key] = res[key]
        rob = res.get("stages", {}).get("robustness", {}).get("table", {}).get("plain")
        if rob:
            figures["clean_accuracy"] = rob.get("clean_accuracy")
            figures["attacks"] = {k: v.get("accuracy") for k, v in rob.get("attacks", {}).items()}
    (out / f"{label}.json").write_text(json.dumps(figures, indent=2))
    print(f"{label}: {'ok' if proc.returncode == 0 else 'FAILED'}, {wall:.1f} s wall on {device} "
          f"({n_train} + {n_test} images; data generated in {gen_s:.1f} s)")
    return proc.returncode


# --------------------------------------------------------------------------- the driver


def run_plan(steps: list[Step], out: Path, budget: float, device: str, dry_run: bool) -> list[dict]:
    cuda = device.startswith("cuda")
    start = time.monotonic()
    rows = []
    for step in steps:
        left = budget - (time.monotonic() - start)
        limit = int(min(step.limit_s, left))
        row = {"step": step.name, "command": shlex.join(step.argv), "limit_s": limit}
        if step.cuda_only and not cuda:
            row.update(status="skipped", why=f"needs CUDA; --device {device}")
        elif limit < min(20, step.limit_s):
            row.update(status="skipped", why=f"budget: {left:.0f} s left of {budget:.0f} s")
        elif dry_run:
            row.update(status="planned")
        else:
            log = out / f"{step.name}.log"
            t0 = time.monotonic()
            with open(log, "w") as fh:
                # a session of its own, so that a step past its limit is stopped with all its children
                proc = subprocess.Popen(step.argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                        env={**os.environ, **step.env, "PYTHONPATH": str(ROOT)},
                                        start_new_session=True)
                try:
                    rc = proc.wait(timeout=limit)
                    status = "ok" if rc == 0 else f"failed (exit {rc})"
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    status = f"timed out after {limit} s"
            row.update(status=status, seconds=round(time.monotonic() - t0, 1), log=log.name)
            text = log.read_text(errors="replace").splitlines()
            row["headline"] = [ln.strip() for ln in text if any(h in ln for h in step.headline)][:30]
        print(f"[{time.monotonic() - start:6.1f} s] {step.name:14s} {row['status']}"
              + (f" ({row['seconds']} s)" if "seconds" in row else "")
              + (f": {row['why']}" if "why" in row else "")
              + (f"\n    $ {row['command']}  (limit {limit} s)" if dry_run else ""), flush=True)
        rows.append(row)
    return rows


def write_summary(rows: list[dict], out: Path, args: argparse.Namespace) -> None:
    meta = {"device": args.device, "smoke": args.smoke, "budget_s": args.budget,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    (out / "summary.json").write_text(json.dumps({"meta": meta, "steps": rows}, indent=2))
    md = [f"# GPU checks and benchmarks ({meta['finished']}, --device {args.device}"
          f"{', smoke sizes' if args.smoke else ''})", "", "| step | status | seconds |", "| --- | --- | --- |"]
    md += [f"| {r['step']} | {r['status']}{': ' + r['why'] if 'why' in r else ''} | {r.get('seconds', '')} |"
           for r in rows]
    for r in rows:
        if r.get("headline"):
            md += ["", f"## {r['step']}", "", "```", *r["headline"], "```"]
    (out / "summary.txt").write_text("\n".join(md) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="folder for the figures (default: $OUT, else ./gpu-figures)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for all steps together")
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true", help="toy sizes (for a CPU run of the script itself)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        out = Path(args.out or ".").resolve()
        if args.child == "env":
            return child_env(args.device)
        if args.child == "kernels_check":
            return child_kernels_check(args.device)
        if args.child == "cifar10":
            return child_cifar10(args.device, args.smoke, args.precision, out)
        raise SystemExit(f"unknown child step {args.child!r}")
    if args.device.startswith("cuda") and not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print(f"--device {args.device}: CUDA is not available here. On a CPU run `--smoke --device cpu` to test "
                  "the script, or `--dry-run` to see the plan.")
            return 2
    out = Path(args.out or os.environ.get("OUT") or "gpu-figures").resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(args.device, args.smoke, out)
    if args.smoke:  # toy sizes: one thread each is faster than contending for a shared machine's cores
        for s in steps:
            s.env.setdefault("OMP_NUM_THREADS", "1")
    rows = run_plan(steps, out, args.budget, args.device, args.dry_run)
    if not args.dry_run:
        write_summary(rows, out, args)
        print(f"figures in {out} (summary.txt, summary.json, one log per step)")
    failed = [r["step"] for r in rows if r["status"] not in ("ok", "skipped", "planned")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
