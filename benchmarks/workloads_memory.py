"""Peak memory of the robustness stage vs dataset size: streaming from a DataLoader, against holding the set.

For N = 1,000 and 10,000 CIFAR-format images (written as CIFAR-10 python pickles), each in a fresh
subprocess: load the test split (torchvision's reader keeps the uint8 file contents, 3 KB per image,
as any CIFAR user has it), take the resident set size (RSS), then run what the robustness stage runs
per model (``toolkit_core.experiment.robustness.sharded_robustness``: clean pass + FGSM + PGD-5 on a
small CNN, batch 100) while a thread samples RSS every 2 ms. Reported: the peak RSS *above* the
baseline. The reference, measured in the same run: the same evaluation after materializing the
test set as one float tensor (what a TensorDataset path does), whose extra memory grows with N.

    python benchmarks/workloads_memory.py            # prints a table and the ratios 10k / 1k
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def child(root: str, n: int, materialize: bool) -> dict:
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    torch.set_num_threads(1)
    from toolkit_core import catalog
    from toolkit_core.experiment.robustness import sharded_robustness
    from toolkit_core.workloads import DataSpec, Preprocessed, load_split

    torch.manual_seed(0)
    model = Preprocessed(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                                       nn.Linear(16 * 8 * 8, 10)), [0.5] * 3, [0.25] * 3).eval()
    test = load_split(DataSpec("cifar10", root=root), "test")
    attacks = {"fgsm": catalog.create("fgsm", eps=8 / 255),
               "pgd": catalog.create("pgd", eps=8 / 255, alpha=2 / 255, steps=5, seed=0)}
    sharded_robustness(model, torch.utils.data.Subset(test, range(100)), attacks, torch.device("cpu"), 100)  # warm
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    data = test
    if materialize:
        x = torch.stack([test[i][0] for i in range(len(test))])
        y = torch.tensor([test[i][1] for i in range(len(test))])
        data = TensorDataset(x, y)
    res = sharded_robustness(model, data, attacks, torch.device("cpu"), 100)
    elapsed = time.perf_counter() - t0
    stop.set()
    t.join()
    return {"n": n, "materialize": materialize, "extra_mib": (peak[0] - base) / 2**20, "seconds": elapsed,
            "clean": res.clean_accuracy, "points": res.n}


def main() -> None:
    from toolkit_core.workloads import synthetic

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1000, 10000):
            root = Path(tmp) / f"c{n}"
            synthetic.write_cifar10(root, 10, n)
            for materialize in (False, True):
                env = {**os.environ, "TORCHTRUST_PROGRESS": "off", "OMP_NUM_THREADS": "1"}
                out = subprocess.run([sys.executable, __file__, "--child", str(root), str(n), str(int(materialize))],
                                     capture_output=True, text=True, check=True, env=env)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'images':>7} {'how':>12} {'peak above baseline (MiB)':>26} {'time (s)':>9}")
    for r in rows:
        how = "materialized" if r["materialize"] else "streamed"
        print(f"{r['n']:>7} {how:>12} {r['extra_mib']:>26.1f} {r['seconds']:>9.1f}")
    by = {(r["n"], r["materialize"]): r["extra_mib"] for r in rows}
    print(f"streamed     10k / 1k peak ratio: {by[(10000, False)] / by[(1000, False)]:.2f}")
    print(f"materialized 10k / 1k peak ratio: {by[(10000, True)] / by[(1000, True)]:.2f}")
    print(f"10k: streamed / materialized: {by[(10000, False)] / by[(10000, True)]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")))
    else:
        main()
