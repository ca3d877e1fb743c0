"""The "done when" checks of the AutoAttack work, as numbers, on two models.

* a small CNN trained on the bundled digits (``toolkit_core.models.digits_model``, 16x16), L-inf eps
  0.1, the first ``--points`` test digits, true labels, AutoAttack's reference budgets (100 steps,
  9 targets, 5000 Square queries) unless ``--quick``;
* a random-init torchvision ResNet-18 (10 classes, ``--size`` x ``--size`` inputs, uniform random
  images labelled by the model itself so every point starts correct), L-inf eps ``--resnet-eps``,
  reduced budgets (CPU).

Printed per model: accuracy under PGD, APGD-CE, APGD-T, FAB-T, Square, and AutoAttack (standard,
same budgets); whether AutoAttack <= the best single attack; how many points APGD-T and FAB-T break
that PGD leaves correct; Square's success rate on the clean-correct points (no gradients).

    python benchmarks/autoattack_checks.py [--points 300] [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch


def _acc(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) == y


def check(title, model, x, y, eps, steps, targets, queries, pgd_steps, tt):
    clean = _acc(model, x, y)
    attacks = {
        f"pgd-{pgd_steps}": tt.create("pgd", eps=eps, alpha=eps / 4, steps=pgd_steps, seed=0),
        "apgd-ce": tt.create("apgd", eps=eps, steps=steps, seed=0),
        "apgd-t": tt.create("apgd_t", eps=eps, steps=steps, n_target_classes=targets, seed=0),
        "fab-t": tt.create("fab", eps=eps, steps=steps, n_target_classes=targets, seed=0),
        "square": tt.create("square", eps=eps, n_queries=queries, seed=0),
    }
    survived, secs = {}, {}
    for k, a in attacks.items():
        t0 = time.perf_counter()
        survived[k] = _acc(model, a(model, x, y), y) & clean
        secs[k] = time.perf_counter() - t0
    aa = tt.create("autoattack", eps=eps, seed=0, attacks=[
        ("apgd", {"steps": steps}), ("apgd_t", {"steps": steps, "n_target_classes": targets}),
        ("fab", {"steps": steps, "n_target_classes": targets}), ("square", {"n_queries": queries})])
    t0 = time.perf_counter()
    x_aa = aa(model, x, y)
    secs["autoattack"] = time.perf_counter() - t0
    survived["autoattack"] = _acc(model, x_aa, y) & clean
    n = len(y)
    print(f"\n{title}: {n} points, eps {eps:.4g} (L-inf), steps {steps}, targets {targets}, Square queries {queries}")
    print(f"  clean accuracy {float(clean.float().mean()):.3f}")
    for k, s in survived.items():
        print(f"  {k:12} accuracy {float(s.float().mean()):.3f}   ({secs[k]:.1f} s)")
    singles = {k: float(v.float().mean()) for k, v in survived.items() if k != "autoattack"}
    best = min(singles.values())
    aa_acc = float(survived["autoattack"].float().mean())
    print(f"  autoattack {aa_acc:.3f} <= best single {best:.3f}: {'yes' if aa_acc <= best else 'NO'}")
    pgd = survived[f"pgd-{pgd_steps}"]
    for k in ("apgd-t", "fab-t"):
        print(f"  {k} breaks {int((pgd & ~survived[k]).sum())} points PGD leaves correct")
    ok = clean.sum().clamp_min(1)
    rate = float((clean & ~survived["square"]).sum() / ok)
    print(f"  square success on clean-correct points: {rate:.3f} (no gradients)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--resnet-points", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--resnet-eps", type=float, default=1 / 255)
    parser.add_argument("--quick", action="store_true", help="reduced budgets on the digits model too")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import torchvision

    import toolkit_core as tt
    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model

    model = digits_model()
    x, y = load_digits(16, "test").tensors
    x, y = x[: args.points], y[: args.points]
    if args.quick:
        check("digits CNN", model, x, y, 0.1, 20, 3, 300, 20, tt)
    else:
        check("digits CNN", model, x, y, 0.1, 100, 9, 5000, 20, tt)

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    xr = torch.rand(args.resnet_points, 3, args.size, args.size)
    with torch.no_grad():
        yr = net(xr).argmax(1)
    check(f"resnet18 (random init, {args.size}x{args.size})", net, xr, yr, args.resnet_eps, 20, 3, 300, 10, tt)


if __name__ == "__main__":
    main()
