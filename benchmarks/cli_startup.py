"""How fast do `torchtrust --help`, `list`, `info` and `plugins` answer? Target: under 0.5 s, no torch.

Prints the median wall time over N runs of each command, next to a bare `python -c pass` measured in
the same run (the interpreter's own start-up, the floor) and their ratio, and the median CPU time
(user + sys) of each, which a busy machine inflates far less than the wall time; `list`, `info` and `plugins`
are timed with a warm catalog cache (registry/catalog_cache.py), after one call that fills it, and the
rebuild (first call after the installed plugins changed) is timed once with an empty cache folder. It
also checks in a fresh interpreter whether `--help` and a warm `list` imported torch (they must not).

    python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CPU: dict[str, float] = {}  # command -> median CPU seconds (user + sys) of the child: robust to load


def _median_time(cmd: list[str], runs: int, env: dict | None = None) -> float:
    import resource

    times, cpu = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    CPU[" ".join(cmd)] = statistics.median(cpu)
    return statistics.median(times)


def _imports_torch(args: list[str], env: dict, cwd: str) -> str:
    # run outside the checkout: from its root, ``python -c`` imports the packages through the '' entry of
    # sys.path, their paths differ from the installed ones, the catalog key misses and the cache is rebuilt
    probe = subprocess.run(
        [sys.executable, "-c", f"import sys; from registry.cli import cli\ntry:\n    cli({args!r})\n"
         "except SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True, env=env, cwd=cwd,
    )
    return probe.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    exe = shutil.which("torchtrust")
    base = [exe] if exe else [sys.executable, "-m", "registry.cli"]
    cache = tempfile.mkdtemp(prefix="torchtrust-cache-")
    env = {**os.environ, "TORCHTRUST_CACHE_DIR": cache}
    env.pop("TORCHTRUST_NO_CACHE", None)
    t0 = time.perf_counter()
    subprocess.run([*base, "list"], check=True, stdout=subprocess.DEVNULL, env=env)  # builds the cache
    rebuild = time.perf_counter() - t0
    _median_time([*base, "--help"], 2, env)  # warm the file cache
    floor = _median_time([sys.executable, "-c", "pass"], args.runs)
    rows = [("python -c pass", floor, CPU[f"{sys.executable} -c pass"])]
    for cmd in (["--help"], ["list"], ["info", "pgd"], ["plugins"]):
        t = _median_time([*base, *cmd], args.runs, env)
        rows.append((f"torchtrust {' '.join(cmd)}", t, CPU[" ".join([*base, *cmd])]))
    for name, t, c in rows:
        print(f"{name:24s}: {t * 1000:7.1f} ms wall (median of {args.runs}), {t / floor:5.2f}x bare python; "
              f"CPU {c * 1000:6.1f} ms")
    print(f"{'list, cache rebuilt':24s}: {rebuild * 1000:7.1f} ms (once: imports every plugin and torch)")
    help_torch, list_torch = _imports_torch(["--help"], env, cache), _imports_torch(["list"], env, cache)
    print(f"torch imported by --help: {help_torch}; by a warm list: {list_torch}")
    slowest = max(t for _, t, _ in rows[1:])
    ok = slowest < 0.5 and help_torch == "False" and list_torch == "False"
    print(f"target < 500 ms, no torch: {'PASS' if ok else 'FAIL'} (slowest {slowest * 1000:.0f} ms)")
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
