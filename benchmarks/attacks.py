"""Speed of the attacks: PGD-10 on ResNet-18 (32x32, batch 64, CPU) as ratios measured in the same run.

References, all timed in the same process and interleaved round-robin (the machine is shared and
noisy), each reported as the median over ``--repeats`` rounds:

* ``floor``: 10 x (forward + input-gradient backward) on the same model and batch, parameters frozen,
  written as the tightest possible loop (``torch.autograd.grad`` w.r.t. the input, nothing else).
  Target for ``pgd / floor``: <= 1.05.
* ``torchattacks``: ``torchattacks.PGD`` with the same eps, alpha, steps and random start, if the
  package is installed (it is not a dependency). Target for ``pgd / torchattacks``: <= 0.9.
* also printed: APGD-CE with 10 iterations and FGSM, as ratios to the floor.

AutoAttack overhead (same model; labels are the model's own predictions, so every point starts
correctly classified): ``autoattack`` (version ``standard``: APGD-CE, APGD-T, FAB-T, Square, with
``--aa-steps`` iterations and ``--aa-queries`` Square queries; 100 and 5000 are the reference budget)
against the sum of its parts: each member run alone, in the same rounds, on exactly the points the
ensemble gave it (those still robust). Target for ``autoattack / sum of parts``: <= 1.05. The forward
and backward passes (per sample) of the ensemble and of its members are printed too.

    python benchmarks/attacks.py [--repeats 7] [--batch 64] [--size 32] [--steps 10] [--threads N]
                                 [--aa-batch 32] [--aa-steps 100] [--aa-queries 5000] [--aa-repeats 3]
                                 [--device cuda]

``--device cuda`` runs model and batches on the GPU and synchronizes before every clock reading
(benchmarks/gpu.py runs it with a small budget).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _where(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}"
    return f"CPU, {torch.get_num_threads()} threads"


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
    parser.add_argument("--aa-batch", type=int, default=32)
    parser.add_argument("--aa-steps", type=int, default=100)
    parser.add_argument("--aa-queries", type=int, default=5000)
    parser.add_argument("--aa-repeats", type=int, default=3)
    parser.add_argument("--aa-eps", type=float, default=1 / 255,
                        help="L-inf radius (a random-init ResNet falls to APGD-CE alone at 8/255)")
    parser.add_argument("--skip-pgd", action="store_true", help="only the AutoAttack overhead")
    parser.add_argument("--skip-aa", action="store_true", help="only PGD/APGD/FGSM against the floor")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)

    import torchvision

    import toolkit_core as tt

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval().to(args.device)
    if not args.skip_pgd:
        _pgd(args, model, tt)
    if not args.skip_aa:
        _autoattack(args, model, tt)


def _pgd(args, model, tt) -> None:
    x = torch.rand(args.batch, 3, args.size, args.size).to(args.device)
    y = torch.randint(0, 10, (args.batch,)).to(args.device)
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
            _sync(args.device)
            t0 = time.perf_counter()
            candidates[k]()
            _sync(args.device)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"PGD-{steps} on torchvision resnet18 (num_classes=10, weights=None), input {args.batch}x3x{args.size}x"
          f"{args.size}, {_where(args.device)}, median of {args.repeats} interleaved rounds")
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


def _autoattack(args, model, tt) -> None:
    from torchtrust_autoattack import VERSIONS

    from toolkit_core.modelstate import preserved

    torch.manual_seed(1)
    x = torch.rand(args.aa_batch, 3, args.size, args.size).to(args.device)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point starts correctly classified
    attacks = []
    for _, name, params in VERSIONS["standard"]:
        p = dict(params)
        if "steps" in p:
            p["steps"] = args.aa_steps
        if "n_queries" in p:
            p["n_queries"] = args.aa_queries
        attacks.append((name, p))
    aa = tt.create("autoattack", eps=args.aa_eps, attacks=attacks, seed=0)
    first = aa.run(model, x, y)  # records which points each member gets
    alive = first.clean.clone()
    subsets = {}
    for label, broken in first.broken.items():
        subsets[label] = alive.nonzero().flatten()
        alive = alive & ~broken
    members = aa.members()

    def part(label):
        idx = subsets[label]
        if not len(idx):
            return None
        with preserved(model, mode=False, freeze=True):
            return members[label].perturb(model, x[idx], y[idx])

    def whole():
        with preserved(model, mode=False, freeze=True):
            return aa.run(model, x, y)

    times = {"autoattack": [], **{k: [] for k in members}}
    for r in range(args.aa_repeats):
        order = list(times)
        order = order[r % len(order):] + order[: r % len(order)]
        for k in order:
            _sync(args.device)
            t0 = time.perf_counter()
            whole() if k == "autoattack" else part(k)
            _sync(args.device)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    parts = sum(med[k] for k in members)
    res = aa.last_run
    print()
    print(f"AutoAttack standard (steps {args.aa_steps}, Square queries {args.aa_queries}, eps {args.aa_eps:.4g}, "
          "L-inf) on the "
          f"same resnet18, {args.aa_batch} points labelled by the model, median of {args.aa_repeats} rounds")
    print(f"{'member':12}{'points':>8}{'median s':>10}{'fwd passes':>12}{'bwd passes':>12}{'robust after':>14}")
    after = res.robust_after()
    for k in members:
        print(f"{k:12}{len(subsets[k]):8d}{med[k]:10.2f}{res.forward[k]:12d}{res.backward[k]:12d}{after[k]:14.3f}")
    print(f"{'autoattack':12}{args.aa_batch:8d}{med['autoattack']:10.2f}{res.total_forward:12d}"
          f"{res.total_backward:12d}{res.worst_case_accuracy:14.3f}")
    ratio = med["autoattack"] / parts
    print(f"autoattack / sum of parts = {ratio:.3f}  (target <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'}); "
          f"its own forwards (clean check + check after each member): {res.overhead_forward} "
          f"of {res.total_forward}")


if __name__ == "__main__":
    main()
