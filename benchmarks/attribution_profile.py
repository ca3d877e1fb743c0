"""Where the time of one attribution goes: ``torch.profiler`` on the CPU, ops sorted by self time.

Profiles one call of a method of :mod:`attribution` (same model, input and parameters as that
benchmark: torchvision, ``weights=None``, eval, ``rand`` input) after one warm-up call, next to the
plain-gradient saliency reference, and prints the top ops of each by self CPU time.

Run: ``OMP_NUM_THREADS=1 python benchmarks/attribution_profile.py --model resnet50 --method epsilon_gamma_box``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import attribution as bench  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--method", nargs="+", default=["epsilon_gamma_box"], choices=list(bench.METHODS))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rows", type=int, default=18)
    args = p.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    model, x = bench._setup(args.model, args.batch, args.size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, batch {args.batch}, "
          f"{args.size}x{args.size}")
    for key in ["saliency", *args.method]:
        run = bench._runner(key)
        run(model, x, 0)  # warm-up
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(model, x, 0)
        wall = time.perf_counter() - t0
        print(f"\n=== {key}: {wall:.3f} s under the profiler")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
