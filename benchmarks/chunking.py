"""Memory of a large batch: peak RSS added by ``attribute`` and attacks on N=32,000 digits, chunked vs whole.

Each measurement runs in its own process (peak RSS is per process): load the digits (tiled to ``--n``
samples, 16x16) and a DigitsCNN (width 16, hidden 64), record the peak RSS so far, run the call, and
report the peak RSS it *added*. ``whole`` passes ``batch_size=N`` (what every call did before
chunking); ``chunked`` leaves the default (``toolkit_core.chunking.default_batch_size``: 4,096 digits
per chunk on the CPU). Ratio = chunked / whole, measured in the same run.

    python benchmarks/chunking.py [--n 32000] [--calls gradient,input_x_gradient,fgsm,pgd]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
import toolkit_core as tt
from toolkit_core.data import load_digits
from toolkit_core.models import DigitsCNN

call, n, whole = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "whole"
x, y = load_digits(16, "all").tensors
reps = -(-n // len(x))
x, y = x.repeat(reps, 1, 1, 1)[:n].contiguous(), y.repeat(reps)[:n].contiguous()
torch.manual_seed(0)
model = DigitsCNN(size=16, width=16, hidden=64).eval()
bs = n if whole else None
if call in ("gradient", "input_x_gradient"):
    fn = lambda: tt.attribute(model, x, y, method=call, batch_size=bs)
else:
    params = {"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "alpha": 0.025, "steps": 3, "seed": 0}}[call]
    attack = tt.create(call, **params)
    fn = lambda: attack(model, x, y, batch_size=bs)
tt.attribute(model, x[:8], y[:8], method="gradient")  # warm-up: imports, kernels, allocator
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
out = fn()
dt = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT" + json.dumps({"added_mib": (after - before) / 1024, "seconds": dt, "shape": list(out.shape)}))
"""


def measure(call: str, n: int, mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, call, str(n), mode], capture_output=True, text=True,
                          timeout=1200)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{call} {mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT"):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32_000)
    parser.add_argument("--calls", default="gradient,input_x_gradient,fgsm,pgd")
    args = parser.parse_args()
    print(f"N = {args.n} digits (16x16), DigitsCNN(width=16, hidden=64), CPU, 1 thread")
    print(f"{'call':18s} {'whole MiB':>10s} {'chunked MiB':>12s} {'ratio':>7s} {'whole s':>8s} {'chunked s':>10s}")
    t0 = time.perf_counter()
    for call in args.calls.split(","):
        whole, chunked = measure(call, args.n, "whole"), measure(call, args.n, "chunked")
        print(f"{call:18s} {whole['added_mib']:10.0f} {chunked['added_mib']:12.0f} "
              f"{chunked['added_mib'] / max(whole['added_mib'], 1e-9):7.3f} {whole['seconds']:8.1f} "
              f"{chunked['seconds']:10.1f}", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
