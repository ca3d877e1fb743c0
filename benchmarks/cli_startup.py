"""How fast does `torchtrust --help` start? Target: under 0.5 s with torch installed.

Prints the median wall time of `torchtrust --help` over N runs, the same for a bare `python -c pass`
measured in the same run (the interpreter's own start-up, the floor), their ratio, and whether
`--help` imported torch (it must not).

    python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def _median_time(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    exe = shutil.which("torchtrust")
    cli = [exe, "--help"] if exe else [sys.executable, "-m", "registry.cli", "--help"]
    _median_time(cli, 2)  # warm the file cache
    floor = _median_time([sys.executable, "-c", "pass"], args.runs)
    help_time = _median_time(cli, args.runs)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from registry.cli import cli\n"
         "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"],
        capture_output=True, text=True,
    )
    imported_torch = probe.stdout.strip().splitlines()[-1]
    print(f"python -c pass        : {floor * 1000:7.1f} ms (median of {args.runs})")
    print(f"torchtrust --help     : {help_time * 1000:7.1f} ms (median of {args.runs})")
    print(f"ratio to bare python  : {help_time / floor:7.2f}x")
    print(f"torch imported        : {imported_torch}")
    verdict = "PASS" if help_time < 0.5 and imported_torch == "False" else "FAIL"
    print(f"target < 500 ms       : {verdict}")


if __name__ == "__main__":
    main()
