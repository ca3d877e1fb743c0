"""Adaptive smoothing on digits, evaluated with AutoAttack: standard vs robust vs their adaptive mixture.

* standard: ``toolkit_core.models.digits_model()`` (plain cross-entropy);
* robust: the same CNN trained with PGD-AT (``pgd_at``, L-inf eps ``--eps``, PGD-5) for ``--epochs``;
* mixed: ``MixedClassifier(standard, robust)`` whose mixing network is trained with the
  ``adaptive_smoothing`` defense (attack: PGD-5 against the whole mixture) for ``--mix-epochs``.

Each is evaluated on ``--points`` test digits: clean accuracy and robust accuracy under AutoAttack
(APGD-CE, APGD-T, FAB-T, Square with ``--steps`` / ``--queries``; the attacks see the whole mixture,
mixing network included), plus the mean mixing weight a(x) on clean and on AutoAttack inputs.

    python benchmarks/adaptive_smoothing.py [--eps 0.1] [--points 300] [--epochs 4] [--mix-epochs 3]
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--mix-epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from torchtrust_adaptive_smoothing import MixedClassifier

    import toolkit_core as tt
    from toolkit_core.data import load_digits
    from toolkit_core.models import DigitsCNN, digits_model

    train = load_digits(16, "train")
    x, y = load_digits(16, "test").tensors
    x, y = x[: args.points], y[: args.points]
    pgd = tt.create("pgd", eps=args.eps, alpha=args.eps / 4, steps=5, seed=0)

    standard = digits_model()
    torch.manual_seed(0)
    robust = DigitsCNN(size=16, width=8, hidden=32)
    tt.fit(robust, train, defense=tt.create("pgd_at", attack=pgd), epochs=args.epochs, lr=3e-3, progress=False)
    robust.eval()
    mixed = MixedClassifier(standard, robust)
    tt.fit(mixed, train, defense=tt.create("adaptive_smoothing", attack=pgd), epochs=args.mix_epochs, lr=3e-3,
           progress=False)
    mixed.eval()

    aa = tt.create("autoattack", eps=args.eps, seed=0, attacks=[
        ("apgd", {"steps": args.steps}), ("apgd_t", {"steps": args.steps, "n_target_classes": 3}),
        ("fab", {"steps": args.steps, "n_target_classes": 3}), ("square", {"n_queries": args.queries})])
    print(f"digits 16x16, {args.points} test points, L-inf eps {args.eps}, AutoAttack (steps {args.steps}, "
          f"3 targets, Square {args.queries} queries)")
    print(f"{'model':10}{'clean':>8}{'autoattack':>12}")
    for name, model in (("standard", standard), ("robust", robust), ("mixed", mixed)):
        res = tt.evaluate_robustness(model, (x, y), attacks={"autoattack": aa}, checks=False)
        print(f"{name:10}{res.clean_accuracy:8.3f}{res.accuracy['autoattack']:12.3f}")
    x_adv = aa(mixed, x, y)
    with torch.no_grad():
        print(f"mixing weight a(x): clean {float(mixed.alpha(x).mean()):.3f}, "
              f"AutoAttack inputs {float(mixed.alpha(x_adv).mean()):.3f}")


if __name__ == "__main__":
    main()
