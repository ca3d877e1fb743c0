"""Speed of the attacks: PGD-10 on ResNet-18 (32x32, batch 64, CPU) as ratios measured in the same run.

References, all timed in the same process and interleaved round-robin (the machine is shared and
noisy), each reported as the median over ``--repeats`` rounds:

* ``floor``: 10 x (forward + input-gradient backward) on the same model and batch, parameters frozen,
  written as the tightest possible loop (``torch.autograd.grad`` w.r.t. the input, nothing else).
  Target for ``pgd / floor``: <= 1.05.
* ``torchattacks``: ``torchattacks.PGD`` with the same eps, alpha, steps and random start, if the
  package is installed (it is not a dependency). Target for ``pgd / torchattacks``: <= 0.9.
* also printed: APGD-CE with 10 iterations and FGSM, as ratios to the floor.

    python benchmarks/attacks.py [--repeats 7] [--batch 64] [--size 32] [--steps 10] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def _floor(model, x, y, steps):
    for _ in range(steps):
        xi = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi), y), xi)
    return g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import torchvision

    import toolkit_core as tt

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    eps, alpha, steps = 8 / 255, 2 / 255, args.steps

    pgd = tt.create("pgd", eps=eps, alpha=alpha, steps=steps, seed=0)
    apgd = tt.create("apgd", eps=eps, steps=steps, seed=0)
    fgsm = tt.create("fgsm", eps=eps)

    def frozen(fn):
        def run():
            flags = [p.requires_grad for p in model.parameters()]
            for p in model.parameters():
                p.requires_grad_(False)
            try:
                return fn()
            finally:
                for p, f in zip(model.parameters(), flags):
                    p.requires_grad_(f)

        return run

    candidates = {
        "floor": frozen(lambda: _floor(model, x, y, steps)),
        "pgd": lambda: pgd(model, x, y),
        "apgd": lambda: apgd(model, x, y),
        "fgsm": lambda: fgsm(model, x, y),
    }
    try:
        import torchattacks

        ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        candidates["torchattacks"] = lambda: ta(x, y)
        ta_version = torchattacks.__version__
    except ImportError:
        ta_version = None

    times: dict[str, list[float]] = {k: [] for k in candidates}
    for fn in candidates.values():  # warm-up (oneDNN primitive caches, allocator)
        fn()
    names = list(candidates)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate to spread drift evenly
        for k in order:
            t0 = time.perf_counter()
            candidates[k]()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"PGD-{steps} on torchvision resnet18 (num_classes=10, weights=None), input {args.batch}x3x{args.size}x"
          f"{args.size}, CPU, {torch.get_num_threads()} threads, median of {args.repeats} interleaved rounds")
    print(f"{'':28}{'median ms':>10}  {'ratio to floor':>14}")
    labels = {
        "floor": f"floor: {steps} x (fwd + dL/dx)",
        "pgd": f"torchtrust pgd ({steps} steps)",
        "apgd": f"torchtrust apgd ({steps} it.)",
        "fgsm": "torchtrust fgsm",
        "torchattacks": f"torchattacks {ta_version} PGD",
    }
    for k in names:
        print(f"{labels[k]:28}{med[k] * 1000:10.1f}  {med[k] / med['floor']:14.3f}")
    r_floor = med["pgd"] / med["floor"]
    print(f"pgd / floor        = {r_floor:.3f}  (target <= 1.05: {'met' if r_floor <= 1.05 else 'NOT met'})")
    if ta_version:
        r_ta = med["pgd"] / med["torchattacks"]
        print(f"pgd / torchattacks = {r_ta:.3f}  (target <= 0.90: {'met' if r_ta <= 0.9 else 'NOT met'})")
    else:
        print("pgd / torchattacks : torchattacks is not installed (pip install torchattacks to measure)")


if __name__ == "__main__":
    main()
