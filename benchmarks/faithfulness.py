"""Faithfulness metrics against Quantus 0.6 on the same inputs: agreement and speed.

The trained digits CNN (``toolkit_core.models.digits_model``), the first ``--samples`` test digits
(16x16, one channel), their true labels, and plain-gradient maps. Every Quantus metric runs with
``normalise=False`` and the perturbation baseline given as a number (0.0), so both sides perturb the
same elements with the same values; softmax outputs on both sides.

* ``max |diff|``: the largest absolute difference between our per-sample outputs and Quantus' (curves:
  pixel-flipping values, region-perturbation drops; ROAD accuracy per percentage; max-sensitivity
  and sparseness per sample).
* ``speed-up``: Quantus' median time / ours over ``--repeats`` calls, measured in the same process.

ROAD runs with ``noise=0`` for the agreement column (the imputation noise is random on both sides);
the ``ROAD noise=0.01`` row times the default. Max-sensitivity feeds Quantus and us the same uniform
noise draws (numpy seed), ``nr_samples=8``, radius 0.05. Single-threaded.

Run: ``python benchmarks/faithfulness.py`` (needs ``pip install quantus``; about a minute).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _time(f, repeats: int) -> float:
    f()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    import warnings

    import quantus

    import toolkit_core as tt
    from toolkit_core.analysis import faithfulness as F
    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model

    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = digits_model()
    x, y = load_digits(16, "test", seed=0).tensors
    x, y = x[: args.samples], y[: args.samples]
    a = tt.attribute(model, x, y, method="gradient")
    xn, yn, an = x.numpy(), y.numpy(), a.numpy()
    kw = {"normalise": False, "disable_warnings": True}
    rows = []

    q = quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0, **kw)
    ref = np.array(q(model, xn, yn, an, device="cpu"))
    ours = F.pixel_flipping(model, x, y, a, features_in_step=4).values[:, 1:].numpy()
    rows.append(("pixel flipping (4 px/step)", np.abs(ours - ref).max(),
                 _time(lambda: q(model, xn, yn, an, device="cpu"), args.repeats)
                 / _time(lambda: F.pixel_flipping(model, x, y, a, features_in_step=4), args.repeats)))

    q = quantus.RegionPerturbation(patch_size=4, regions_evaluation=16, perturb_baseline=0.0, **kw)
    ref = np.array(q(model, xn, yn, an, device="cpu"))
    ours = F.region_perturbation(model, x, y, a, patch_size=4, regions=16).extra["drops"][:, 1:].numpy()
    rows.append(("region perturbation 4x4", np.abs(ours - ref).max(),
                 _time(lambda: q(model, xn, yn, an, device="cpu"), args.repeats)
                 / _time(lambda: F.region_perturbation(model, x, y, a, patch_size=4, regions=16), args.repeats)))

    pcts = [10, 30, 50, 70, 90]
    q = quantus.ROAD(percentages=pcts, noise=0.0, **kw)
    q(model, xn, yn, an, device="cpu")
    ref = np.array(list(q.evaluation_scores.values()))
    ours = F.road(model, x, y, a, percentages=tuple(pcts), noise=0.0, orders=("morf",)).morf_accuracy.numpy()
    rows.append(("ROAD MoRF noise=0", np.abs(ours - ref).max(),
                 _time(lambda: q(model, xn, yn, an, device="cpu"), args.repeats)
                 / _time(lambda: F.road(model, x, y, a, percentages=tuple(pcts), noise=0.0, orders=("morf",)),
                         args.repeats)))
    q = quantus.ROAD(percentages=pcts, noise=0.01, **kw)
    rows.append(("ROAD MoRF noise=0.01", float("nan"),
                 _time(lambda: q(model, xn, yn, an, device="cpu"), args.repeats)
                 / _time(lambda: F.road(model, x, y, a, percentages=tuple(pcts), orders=("morf",)), args.repeats)))

    def explain(model, inputs, targets, **kwargs):
        return tt.attribute(model, torch.as_tensor(inputs), torch.as_tensor(targets), method="gradient").numpy()

    n = 8
    q = quantus.MaxSensitivity(nr_samples=n, lower_bound=0.05, disable_warnings=True)

    def run_q():
        np.random.seed(5)
        return np.array(q(model, xn, yn, an, explain_func=explain, device="cpu"))

    np.random.seed(5)
    pert = np.stack([np.random.uniform(-0.05, 0.05, size=(len(x), x[0].numel())) for _ in range(n)])
    pert_t = torch.as_tensor(pert, dtype=torch.float32).view(n, *x.shape)
    ours = F.max_sensitivity(model, x, y, "gradient", perturbations=pert_t).numpy()
    rows.append(("max-sensitivity (8 draws)", np.abs(ours - run_q()).max(),
                 _time(run_q, args.repeats)
                 / _time(lambda: F.max_sensitivity(model, x, y, "gradient", perturbations=pert_t), args.repeats)))

    q = quantus.Sparseness(disable_warnings=True)
    ref = np.array(q(model, xn, yn, an, device="cpu"))
    rows.append(("sparseness (Gini)", np.abs(F.sparseness(a).numpy() - ref).max(),
                 _time(lambda: q(model, xn, yn, an, device="cpu"), args.repeats)
                 / _time(lambda: F.sparseness(a), args.repeats)))

    print(f"digits CNN, {len(x)} test digits, gradient maps, baseline 0.0, Quantus {quantus.__version__}")
    print(f"{'metric':<30}{'max |diff|':>12}{'speed-up':>10}")
    for name, diff, speed in rows:
        print(f"{name:<30}{diff:>12.1e}{speed:>10.1f}")


if __name__ == "__main__":
    main()
