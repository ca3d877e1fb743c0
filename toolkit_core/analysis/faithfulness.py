"""Faithfulness of an attribution map: does perturbing what it ranks high change the model most?

All measures take the map ``a`` (``x``'s shape, or one channel ``(B, 1, *S)`` that stands for every
channel), run batched (every perturbed copy of every sample goes through the model in passes of at most
``batch_size`` rows) and take the perturbation baseline explicitly. ``output="probability"`` reads the
softmax probability of the target class (Quantus' default), ``"logit"`` the logit.

* :func:`pixel_flipping` -- Bach et al. 2015 / Samek et al. 2017: replace the input *elements* by the
  baseline in order of decreasing attribution, ``features_in_step`` at a time; the curve of
  ``f_t(x^(k))``. Quantus' ``PixelFlipping`` curve is ``values[:, 1:]``.
* :func:`region_perturbation` -- Samek et al. 2017 (arXiv:1509.06321): ``patch_size`` squares of a grid
  centred on the image (as Quantus), ranked by their summed attribution, replaced one after the other
  (MoRF) -- ``AOPC = 1/(L+1) sum_{k=0}^{L} (f_t(x) - f_t(x^(k)))``; ``drops[:, 1:]`` is Quantus'
  ``RegionPerturbation`` output.
* :func:`insertion_deletion` -- Petsiuk et al. 2018 (arXiv:1806.07421): deletion removes *pixels*
  (all channels of a position) in order of decreasing attribution, ``step`` per step; insertion starts
  from the baseline and inserts them; the AUC of the probability curve over the fraction of pixels
  ``(sum_k v_k - v_0/2 - v_n/2) / n`` (RISE's definition). Deletion: lower is better; insertion: higher.
* :func:`road` -- Rong et al. 2022 (arXiv:2202.00449): remove the top (MoRF) or bottom (LeRF) ``p``
  percent of pixels and fill them by *noisy linear imputation* (each removed pixel is the weighted mean
  of its 8 neighbours, weights 1/6 for edge- and 1/12 for corner-neighbours, one sparse linear system
  for the whole batch, plus ``N(0, noise^2)``); accuracy and target probability per percentage.
* :func:`max_sensitivity` -- Yeh et al. 2019 (arXiv:1901.09392): ``max_j ||A(x + d_j) - A(x)|| / ||A(x)||``
  over ``d_j ~ U(-radius, radius)^D`` (Frobenius norms, as Quantus' ``MaxSensitivity``).
* :func:`sparseness` -- Chalasani et al. 2020: the Gini index of ``|a|`` (Quantus' ``Sparseness``).
* :func:`evaluate_faithfulness` -- all of the above for several methods; per-sample values, means and
  standard errors, and a ranking.

Each function hands the model back unchanged and leaves ``x`` and ``a`` untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._common import analysis_state, check_input, check_model, check_target, resolve_method, run_method

__all__ = [
    "CurveResult", "FaithfulnessReport", "ROADResult", "evaluate_faithfulness", "insertion_deletion",
    "max_sensitivity", "noisy_linear_imputation", "pixel_flipping", "plot_report", "region_perturbation", "road",
    "sparseness",
]

OUTPUTS = ("probability", "logit")


# --------------------------------------------------------------------------- plumbing


def _check_map(a: Tensor, x: Tensor) -> Tensor:
    if not isinstance(a, Tensor):
        raise TypeError(f"the attribution must be a tensor, got {type(a).__name__}")
    if a.shape != x.shape and not (a.dim() == x.dim() and a.shape[0] == x.shape[0] and a.shape[1] == 1
                                   and a.shape[2:] == x.shape[2:]):
        raise ValueError(
            f"the attribution has shape {tuple(a.shape)} but x has {tuple(x.shape)}; pass a map of x's shape "
            f"or one channel {(x.shape[0], 1, *x.shape[2:])}"
        )
    if not torch.isfinite(a).all():
        raise ValueError("the attribution contains NaN or inf values")
    return a.detach().to(x.device, x.dtype).expand_as(x)


def _baseline(baseline: Any, x: Tensor) -> Tensor:
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, Tensor)):
        raise TypeError(f"baseline must be a number or a tensor broadcastable to x, got {type(baseline).__name__}")
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(b, x.shape)
    except RuntimeError as e:
        raise ValueError(f"baseline of shape {tuple(b.shape)} does not broadcast to x of shape {tuple(x.shape)}") from e


def _readout(logits: Tensor, t: Tensor, output: str) -> Tensor:
    if output == "probability":
        return logits.softmax(1).gather(1, t[:, None])[:, 0]
    return logits.gather(1, t[:, None])[:, 0]


def _ranks(scores: Tensor, descending: bool = True) -> Tensor:
    """Rank of every unit per row (0 = first perturbed); ties keep index order (a stable sort)."""
    order = torch.sort(scores, dim=1, descending=descending, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order).contiguous())
    return ranks


def _units_pixels(x: Tensor) -> Tensor:
    """Unit id of every element of one sample: its spatial position (channels share a unit)."""
    p = math.prod(x.shape[2:])
    return torch.arange(p, device=x.device).repeat(x.shape[1])


def _units_patches(x: Tensor, patch: int) -> tuple[Tensor, int]:
    """Unit id of every element: the ``patch x patch`` square of a grid centred on the image (Quantus)."""
    if x.dim() != 4:
        raise ValueError(f"region perturbation needs images (B, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[2:]
    pads = []
    for d in (h, w):
        total = (patch - d % patch) % patch
        pads.append(total // 2)
    rows = (torch.arange(h, device=x.device) + pads[0]) // patch
    cols = (torch.arange(w, device=x.device) + pads[1]) // patch
    n_cols = (w + pads[1] + patch - 1) // patch
    n_rows = (h + pads[0] + patch - 1) // patch
    pos = (rows[:, None] * n_cols + cols[None, :]).reshape(-1)
    return pos.repeat(x.shape[1]), n_rows * n_cols


def _perturbed_outputs(
    model: nn.Module, x: Tensor, fill: Tensor, t: Tensor, unit_of: Tensor, ranks: Tensor, counts: list[int],
    output: str, batch_size: int, start_from_fill: bool = False,
) -> Tensor:
    """``f_t`` of every sample with its ``counts[k]`` first-ranked units taken from ``fill``, for every k.

    ``unit_of``: (D,) unit id of each element; ``ranks``: (B, U) rank of each unit. With
    ``start_from_fill`` the roles swap (insertion): the first-ranked units come from ``x``, the rest from
    ``fill``. Returns (B, len(counts)); rows go through the model ``batch_size`` at a time.
    """
    b = x.shape[0]
    xf, ff = x.reshape(b, -1), fill.reshape(b, -1)
    elem_rank = ranks[:, unit_of]  # (B, D)
    counts_t = torch.as_tensor(counts, device=x.device)
    n_rows = b * len(counts)
    out = torch.empty(n_rows, dtype=x.dtype, device=x.device)
    for start in range(0, n_rows, batch_size):
        rows = torch.arange(start, min(start + batch_size, n_rows), device=x.device)
        k, s = rows // b, rows % b
        mask = elem_rank[s] < counts_t[k][:, None]
        if start_from_fill:
            xs = torch.where(mask, xf[s], ff[s])
        else:
            xs = torch.where(mask, ff[s], xf[s])
        with torch.no_grad():
            logits = model(xs.reshape(len(rows), *x.shape[1:]))
        out[start:start + len(rows)] = _readout(logits, t[s], output)
    return out.reshape(len(counts), b).T


def _prepare(model, x, target, a, method, params):
    """(x, target, map): the map given, or computed with ``method`` (inside the caller's analysis state)."""
    logits, t = check_target(model, x, target)
    if a is None:
        if method is None:
            raise ValueError("pass the attribution map a=... or a method=... to compute it")
        m = resolve_method((method, params) if params and isinstance(method, str) else method)
        a = run_method(m.method, model, x, t)
    return logits, t, _check_map(a, x)


def _check_common(output: str, batch_size: int) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _trapezoid(values: Tensor) -> Tensor:
    """Area under a curve sampled at n+1 equally spaced points of [0, 1]: (sum - v0/2 - vn/2) / n."""
    n = values.shape[1] - 1
    if n == 0:
        return values[:, 0]
    return (values.sum(1) - values[:, 0] / 2 - values[:, -1] / 2) / n


# --------------------------------------------------------------------------- results


@dataclass
class CurveResult:
    """A perturbation curve per sample: ``values[:, k]`` after ``fractions[k]`` of the units were changed."""

    name: str
    fractions: Tensor  # (K+1,), starts at 0
    values: Tensor  # (B, K+1) target probability (or logit)
    auc: Tensor  # (B,) trapezoid area over fractions in [0, 1]
    extra: dict[str, Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fractions": self.fractions.tolist(), "mean_curve": self.values.mean(0).tolist(),
                "auc": self.auc.tolist(), **{k: v.tolist() for k, v in self.extra.items()}}


# --------------------------------------------------------------------------- pixel flipping / regions


def pixel_flipping(
    model: nn.Module, x: Tensor, target: Any = None, a: Tensor | None = None, method: Any = None,
    features_in_step: int = 1, baseline: float | Tensor = 0.0, output: str = "probability",
    batch_size: int = 256, **params: Any,
) -> CurveResult:
    """Flip input elements to ``baseline`` in order of decreasing attribution (MoRF), ``features_in_step`` per step.

    ``values[:, k] = f_t(x^(k))``, where ``x^(k)`` has its ``k * features_in_step`` highest-attributed
    elements replaced (``k = 0`` is the clean input). A faithful map makes the curve fall fast (low AUC).
    With a one-channel map, each of its entries stands for every channel at that position (ranked as
    separate elements with equal scores, as Quantus broadcasts it).
    """
    check_model(model)
    x = check_input(x)
    _check_common(output, batch_size)
    if not isinstance(features_in_step, int) or features_in_step < 1:
        raise ValueError(f"features_in_step must be a positive integer, got {features_in_step!r}")
    fill = _baseline(baseline, x)
    with analysis_state(model):
        _, t, amap = _prepare(model, x, target, a, method, params)
        d = x[0].numel()
        n = math.ceil(d / features_in_step)
        counts = [min(d, k * features_in_step) for k in range(n + 1)]
        ranks = _ranks(amap.reshape(len(x), -1))
        unit_of = torch.arange(d, device=x.device)
        values = _perturbed_outputs(model, x, fill, t, unit_of, ranks, counts, output, batch_size)
    fractions = torch.tensor(counts, dtype=torch.float64) / d
    auc = _trapezoid_x(values, fractions)
    return CurveResult("pixel_flipping", fractions, values.cpu(), auc.cpu())


def _trapezoid_x(values: Tensor, fractions: Tensor) -> Tensor:
    """Trapezoid area of ``values`` over the (possibly unequally spaced) ``fractions``."""
    f = fractions.to(values.device, values.dtype)
    return ((values[:, 1:] + values[:, :-1]) / 2 * (f[1:] - f[:-1])).sum(1)


def region_perturbation(
    model: nn.Module, x: Tensor, target: Any = None, a: Tensor | None = None, method: Any = None,
    patch_size: int = 8, regions: int = 100, order: str = "morf", baseline: float | Tensor = 0.0,
    output: str = "probability", batch_size: int = 256, **params: Any,
) -> CurveResult:
    """Region perturbation (Samek et al. 2017): replace ``patch_size`` squares by ``baseline`` one at a time.

    Squares tile the image on a grid centred like Quantus' padding (border squares are clipped to the
    image); their score is the summed attribution. ``order``: ``"morf"`` (most relevant first) or
    ``"lerf"``. ``values[:, k] = f_t(x^(k))``, ``extra["drops"] = f_t(x) - values`` and ``extra["aopc"]
    = mean_k drops[:, k]`` over ``k = 0..L`` (Samek's AOPC; higher is better for MoRF).
    """
    check_model(model)
    x = check_input(x)
    _check_common(output, batch_size)
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
    fill = _baseline(baseline, x)
    with analysis_state(model):
        _, t, amap = _prepare(model, x, target, a, method, params)
        unit_of, n_units = _units_patches(x, patch_size)
        b = len(x)
        scores = torch.zeros(b, n_units, dtype=amap.dtype, device=x.device)
        scores.index_add_(1, unit_of, amap.reshape(b, -1))
        ranks = _ranks(scores, descending=order == "morf")
        steps = min(regions, n_units)
        values = _perturbed_outputs(model, x, fill, t, unit_of, ranks, list(range(steps + 1)), output, batch_size)
    drops = values[:, :1] - values
    fractions = torch.arange(steps + 1, dtype=torch.float64) / n_units
    return CurveResult("region_perturbation", fractions, values.cpu(), _trapezoid_x(values, fractions).cpu(),
                       {"drops": drops.cpu(), "aopc": drops.mean(1).cpu()})


# --------------------------------------------------------------------------- insertion / deletion


def insertion_deletion(
    model: nn.Module, x: Tensor, target: Any = None, a: Tensor | None = None, method: Any = None,
    mode: str = "deletion", step: int | None = None, steps: int = 32, baseline: float | Tensor = 0.0,
    output: str = "probability", batch_size: int = 256, **params: Any,
) -> CurveResult:
    """Deletion / insertion curves and AUC (Petsiuk et al. 2018, RISE).

    Pixels (every channel of a spatial position) are ranked by the attribution summed over channels.
    ``mode="deletion"``: starting from ``x``, the top pixels are replaced by ``baseline``;
    ``"insertion"``: starting from ``baseline`` (RISE uses a blurred copy: pass it as a tensor), the top
    pixels are copied from ``x``. ``step`` pixels per step (default ``ceil(P / steps)``), ``n = ceil(P /
    step)`` steps; the AUC is ``(sum_k v_k - v_0/2 - v_n/2) / n``. Deletion: lower is better.
    """
    check_model(model)
    x = check_input(x)
    _check_common(output, batch_size)
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    fill = _baseline(baseline, x)
    with analysis_state(model):
        _, t, amap = _prepare(model, x, target, a, method, params)
        unit_of = _units_pixels(x)
        p = math.prod(x.shape[2:])
        step = step if step is not None else math.ceil(p / steps)
        if not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be a positive integer, got {step!r}")
        n = math.ceil(p / step)
        counts = [min(p, k * step) for k in range(n + 1)]
        b = len(x)
        scores = torch.zeros(b, p, dtype=amap.dtype, device=x.device)
        scores.index_add_(1, unit_of, amap.reshape(b, -1))
        ranks = _ranks(scores)
        values = _perturbed_outputs(model, x, fill, t, unit_of, ranks, counts, output, batch_size,
                                    start_from_fill=mode == "insertion")
    fractions = torch.tensor(counts, dtype=torch.float64) / p
    return CurveResult(mode, fractions, values.cpu(), _trapezoid(values).cpu())


# --------------------------------------------------------------------------- ROAD


_NEIGHBOURS = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
               ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]


def noisy_linear_imputation(x: Tensor, removed: Tensor, noise: float = 0.01,
                            generator: torch.Generator | None = None) -> Tensor:
    """Fill the ``removed`` pixels of images ``x`` (B, C, H, W) by noisy linear imputation (Rong et al. 2022).

    ``removed``: (B, H, W) bool. Each removed pixel ``i`` satisfies
    ``v_i * sum_{n valid} w_n = sum_{n valid} w_n v_n`` over its in-image 8-neighbours (``w = 1/6`` for
    the 4 edge-neighbours, ``1/12`` for the corners); one sparse system, block-diagonal over the batch,
    solved once with every channel as a right-hand side (SciPy). Then ``N(0, noise^2)`` is added to the
    imputed values. Returns a new tensor.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    if x.dim() != 4 or removed.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"need x (B, C, H, W) and removed (B, H, W), got {tuple(x.shape)} and {tuple(removed.shape)}")
    b, c, h, w = x.shape
    xn = x.detach().cpu().double().numpy()
    rem = removed.detach().cpu().numpy().astype(bool)
    n_unknown = int(rem.sum())
    out = x.detach().clone()
    if n_unknown == 0:
        return out
    var_id = -np.ones(rem.shape, dtype=np.int64)
    var_id[rem] = np.arange(n_unknown)
    bi, yi, xi = np.nonzero(rem)  # in var_id order (C order)
    diag = np.ones(n_unknown)
    rows, cols, vals = [], [], []
    rhs = np.zeros((n_unknown, c))
    for (dy, dx), wgt in _NEIGHBOURS:
        ny, nx = yi + dy, xi + dx
        valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diag[~valid] -= wgt
        vi = np.nonzero(valid)[0]
        nb, nyv, nxv = bi[vi], ny[vi], nx[vi]
        unknown_nb = rem[nb, nyv, nxv]
        u = vi[unknown_nb]
        rows.append(u)
        cols.append(var_id[nb[unknown_nb], nyv[unknown_nb], nxv[unknown_nb]])
        vals.append(np.full(len(u), wgt))
        k = vi[~unknown_nb]
        kb, ky, kx = nb[~unknown_nb], nyv[~unknown_nb], nxv[~unknown_nb]
        rhs[k] -= wgt * xn[kb, :, ky, kx]
    rows.append(np.arange(n_unknown))
    cols.append(np.arange(n_unknown))
    vals.append(-diag)
    mat = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                     shape=(n_unknown, n_unknown)).tocsc()
    sol = spsolve(mat, rhs)
    sol = np.asarray(sol).reshape(n_unknown, c)
    vals_t = torch.as_tensor(sol, dtype=x.dtype, device=x.device)
    if noise:
        vals_t = vals_t + noise * torch.randn(vals_t.shape, generator=generator, dtype=x.dtype).to(x.device)
    idx = [torch.as_tensor(v, device=x.device) for v in (bi, yi, xi)]
    out.permute(0, 2, 3, 1)[idx[0], idx[1], idx[2]] = vals_t
    return out


@dataclass
class ROADResult:
    """ROAD curves: accuracy and target probability after removing ``percentages`` of the pixels."""

    percentages: list[float]
    morf_accuracy: Tensor  # (P,) share of samples still predicted as the target
    lerf_accuracy: Tensor | None
    morf_probability: Tensor  # (B, P)
    lerf_probability: Tensor | None
    morf_correct: Tensor  # (B, P) bool: prediction equals the target
    lerf_correct: Tensor | None

    @property
    def morf_auc(self) -> float:
        """Mean MoRF accuracy over the percentages (lower: more faithful)."""
        return float(self.morf_accuracy.mean())

    @property
    def lerf_auc(self) -> float | None:
        return None if self.lerf_accuracy is None else float(self.lerf_accuracy.mean())

    def to_dict(self) -> dict[str, Any]:
        return {"percentages": self.percentages, "morf_accuracy": self.morf_accuracy.tolist(),
                "lerf_accuracy": None if self.lerf_accuracy is None else self.lerf_accuracy.tolist(),
                "morf_auc": self.morf_auc, "lerf_auc": self.lerf_auc}


def road(
    model: nn.Module, x: Tensor, target: Any = None, a: Tensor | None = None, method: Any = None,
    percentages: tuple[float, ...] = tuple(range(10, 100, 10)), orders: tuple[str, ...] = ("morf", "lerf"),
    noise: float = 0.01, seed: int | None = 0, batch_size: int = 256, **params: Any,
) -> ROADResult:
    """ROAD: RemOve And Debias (Rong et al. 2022) with noisy linear imputation.

    For each ``p`` in ``percentages``: the ``int(P * p / 100)`` pixels with the highest (MoRF) or lowest
    (LeRF) attribution (summed over channels) are removed and imputed from their neighbours
    (:func:`noisy_linear_imputation`). Accuracy is the share of samples whose prediction equals
    ``target`` (``None``: the clean prediction); MoRF accuracy should fall fast, LeRF stay high. Ranking
    ties keep the pixel order (stable sort). ``seed`` seeds the imputation noise.
    """
    check_model(model)
    x = check_input(x)
    _check_common("probability", batch_size)
    if x.dim() != 4:
        raise ValueError(f"ROAD needs images (B, C, H, W), got shape {tuple(x.shape)}")
    if any(o not in ("morf", "lerf") for o in orders) or "morf" not in orders:
        raise ValueError(f"orders must contain 'morf' (and optionally 'lerf'), got {orders!r}")
    pcts = [float(p) for p in percentages]
    if not pcts or any(not (0 <= p <= 100) for p in pcts):
        raise ValueError(f"percentages must lie in [0, 100], got {percentages!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out: dict[str, tuple[Tensor, Tensor]] = {}
    with analysis_state(model):
        _, t, amap = _prepare(model, x, target, a, method, params)
        b, _, h, w = x.shape
        scores = amap.sum(1).reshape(b, -1)
        for o in orders:
            ranks = _ranks(scores, descending=o == "morf")
            probs, correct = [], []
            for p in pcts:
                k = int(h * w * p / 100)
                removed = (ranks < k).reshape(b, h, w)
                xi = noisy_linear_imputation(x, removed, noise, gen)
                logits = torch.cat([model(xi[i:i + batch_size]).detach() for i in range(0, b, batch_size)])
                probs.append(logits.softmax(1).gather(1, t[:, None])[:, 0])
                correct.append(logits.argmax(1) == t)
            out[o] = (torch.stack(probs, 1).cpu(), torch.stack(correct, 1).cpu())
    lerf = out.get("lerf")
    return ROADResult(pcts, out["morf"][1].double().mean(0), None if lerf is None else lerf[1].double().mean(0),
                      out["morf"][0], None if lerf is None else lerf[0], out["morf"][1],
                      None if lerf is None else lerf[1])


# --------------------------------------------------------------------------- robustness / complexity


def max_sensitivity(
    model: nn.Module, x: Tensor, target: Any = None, method: Any = None, radius: float = 0.2,
    samples: int = 16, perturbations: Tensor | None = None, seed: int | None = 0, batch_size: int = 256,
    a: Tensor | None = None, **params: Any,
) -> Tensor:
    """Max-sensitivity (Yeh et al. 2019): ``max_j ||A(x + d_j) - A(x)||_F / ||A(x)||_F`` per sample.

    ``d_j ~ U(-radius, radius)`` elementwise (no clipping), ``samples`` draws (seeded), or the
    ``perturbations`` given as an (n, B, ...) tensor. ``A`` is ``method`` explaining ``target`` (``None``:
    the clean prediction) for every perturbed copy, run on ``batch_size`` rows at a time. ``a``: the
    clean map if already computed. Lower is better. NaN for a sample whose clean map is all zeros
    (the ratio is undefined; e.g. a Grad-CAM whose ReLU removes everything).
    """
    check_model(model)
    x = check_input(x)
    _check_common("probability", batch_size)
    m = resolve_method((method, params) if params and isinstance(method, str) else method)
    if perturbations is None:
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        perturbations = (torch.rand((samples, *x.shape), generator=gen, dtype=x.dtype) * 2 - 1) * radius
    perturbations = perturbations.to(x.device, x.dtype)
    if perturbations.shape[1:] != x.shape:
        raise ValueError(f"perturbations must have shape (n, {', '.join(map(str, x.shape))}), got "
                         f"{tuple(perturbations.shape)}")
    n, b = perturbations.shape[0], x.shape[0]
    with analysis_state(model):
        _, t = check_target(model, x, target)
        a0 = (run_method(m.method, model, x, t) if a is None else _check_map(a, x)).reshape(b, -1)
        rows = (x[None] + perturbations).reshape(n * b, *x.shape[1:])  # draw-major: row r is draw r // b
        tt_ = t.repeat(n)
        maps = torch.cat([run_method(m.method, model, rows[i:i + batch_size], tt_[i:i + batch_size])
                          for i in range(0, n * b, batch_size)])
    diff = (maps.reshape(n, b, -1) - a0[None]).norm(dim=2)
    norm = a0.norm(dim=1)
    out = (diff / norm.clamp_min(torch.finfo(norm.dtype).tiny)[None]).amax(0)
    return torch.where(norm > 0, out, torch.full_like(out, float("nan"))).cpu()


def sparseness(a: Tensor, eps: float = 1e-7) -> Tensor:
    """Gini index of ``|a|`` per sample (Chalasani et al. 2020; Quantus' ``Sparseness``).

    ``v`` = ``|a|`` divided by its per-sample maximum, plus ``eps``, sorted ascending (``n`` entries):
    ``G = sum_i (2 i - n - 1) v_(i) / (n sum_i v_i)``. 0 = uniform, towards 1 = concentrated.
    """
    if not isinstance(a, Tensor) or a.dim() < 2:
        raise ValueError("a must be a (B, ...) tensor")
    v = a.detach().abs().flatten(1).double()
    v = v / v.amax(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny) + eps
    v = v.sort(1).values
    n = v.shape[1]
    i = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    return ((2 * i - n - 1) * v).sum(1) / (n * v.sum(1))


# --------------------------------------------------------------------------- several methods at once


#: metric -> higher is better
DIRECTIONS = {"deletion_auc": False, "insertion_auc": True, "region_aopc": True, "road_morf": False,
              "road_lerf": True, "max_sensitivity": False, "sparseness": True}


@dataclass
class FaithfulnessReport:
    """Per-sample values of every metric for every method; means, standard errors and a ranking."""

    methods: list[str]
    values: dict[str, dict[str, Tensor]]  # method -> metric -> (B,) per-sample values
    maps: dict[str, Tensor] = field(default_factory=dict)

    def _finite(self, method: str, metric: str) -> Tensor:
        v = self.values[method][metric].double()
        return v[~torch.isnan(v)]

    def mean(self, method: str, metric: str) -> float:
        """Mean over the samples where the metric is defined (NaN entries, e.g. all-zero maps, left out)."""
        v = self._finite(method, metric)
        return float(v.mean()) if len(v) else float("nan")

    def sem(self, method: str, metric: str) -> float:
        """Standard error of the mean, ``std / sqrt(n)`` over the defined samples."""
        v = self._finite(method, metric)
        return float(v.std(unbiased=True) / math.sqrt(len(v))) if len(v) > 1 else float("nan")

    def metrics(self) -> list[str]:
        return [k for k in DIRECTIONS if all(k in self.values[m] for m in self.methods)]

    def ranking(self) -> dict[str, list[str]]:
        """For each metric, the methods from best to worst (by mean)."""
        out = {}
        for k in self.metrics():
            sign = -1.0 if DIRECTIONS[k] else 1.0  # best first; undefined (NaN) last
            out[k] = sorted(self.methods, key=lambda m: (math.isnan(self.mean(m, k)), sign * self.mean(m, k)
                                                         if not math.isnan(self.mean(m, k)) else 0.0))
        return out

    def mean_rank(self) -> dict[str, float]:
        """Average position (1 = best) of each method over the metrics."""
        r = self.ranking()
        return {m: sum(order.index(m) + 1 for order in r.values()) / max(1, len(r)) for m in self.methods}

    def to_dict(self) -> dict[str, Any]:
        return {m: {k: {"mean": self.mean(m, k), "sem": self.sem(m, k)} for k in self.metrics()}
                for m in self.methods}

    def table(self) -> str:
        ks = self.metrics()
        head = f"{'method':<28}" + "".join(f"{k + (' ^' if DIRECTIONS[k] else ' v'):>22}" for k in ks) + "  mean rank"
        ranks = self.mean_rank()
        rows = [head]
        for m in sorted(self.methods, key=ranks.get):
            rows.append(f"{m:<28}" + "".join(f"{self.mean(m, k):>12.4f} ± {self.sem(m, k):<7.4f}" for k in ks)
                        + f"  {ranks[m]:.2f}")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def evaluate_faithfulness(
    model: nn.Module, x: Tensor, target: Any = None, methods: Any = None, baseline: float | Tensor = 0.0,
    steps: int = 16, patch_size: int = 4, regions: int = 16, road_percentages: tuple[float, ...] = (10, 30, 50, 70, 90),
    sensitivity_samples: int = 4, radius: float = 0.05, seed: int = 0, batch_size: int = 256,
    keep_maps: bool = False,
) -> FaithfulnessReport:
    """Deletion and insertion AUC, region-perturbation AOPC, ROAD (MoRF and LeRF mean accuracy per sample),
    max-sensitivity and sparseness for each of ``methods`` on the same inputs and the same ``baseline``.

    Every value is per sample, so the report carries means and standard errors (error bars) and ranks
    the methods per metric (:meth:`FaithfulnessReport.ranking`, :meth:`~FaithfulnessReport.mean_rank`).
    """
    from ._common import resolve_methods

    check_model(model)
    x = check_input(x)
    resolved = resolve_methods(list(methods) if isinstance(methods, tuple) else methods)
    with analysis_state(model):
        _, t = check_target(model, x, target)
        maps = {r.label: run_method(r.method, model, x, t) for r in resolved}
    values: dict[str, dict[str, Tensor]] = {}
    for r in resolved:
        a = maps[r.label]
        v: dict[str, Tensor] = {}
        v["deletion_auc"] = insertion_deletion(model, x, t, a, mode="deletion", steps=steps, baseline=baseline,
                                               batch_size=batch_size).auc
        v["insertion_auc"] = insertion_deletion(model, x, t, a, mode="insertion", steps=steps, baseline=baseline,
                                                batch_size=batch_size).auc
        if x.dim() == 4:
            v["region_aopc"] = region_perturbation(model, x, t, a, patch_size=patch_size, regions=regions,
                                                   baseline=baseline, batch_size=batch_size).extra["aopc"]
            rd = road(model, x, t, a, percentages=road_percentages, seed=seed, batch_size=batch_size)
            v["road_morf"] = rd.morf_correct.double().mean(1)
            v["road_lerf"] = rd.lerf_correct.double().mean(1)
        if sensitivity_samples:
            v["max_sensitivity"] = max_sensitivity(model, x, t, r.method, radius=radius, samples=sensitivity_samples,
                                                   seed=seed, batch_size=batch_size, a=a)
        v["sparseness"] = sparseness(a).cpu()
        values[r.label] = v
    return FaithfulnessReport([r.label for r in resolved], values, maps if keep_maps else {})



def plot_report(report: FaithfulnessReport, path: Any, title: str = "faithfulness") -> None:
    """One panel per metric: the methods' means with standard-error bars, best first; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = report.metrics()
    cols = min(4, len(ks))
    rows = math.ceil(len(ks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 0.35 * len(report.methods) * rows + 1.2 * rows),
                             squeeze=False)
    ranking = report.ranking()
    for ax, k in zip(axes.flat, ks):
        order = ranking[k][::-1]  # best at the top
        ax.barh(order, [report.mean(m, k) for m in order], xerr=[report.sem(m, k) for m in order],
                color="#4c72b0", ecolor="black", capsize=2)
        ax.set_title(f"{k} ({'higher' if DIRECTIONS[k] else 'lower'} is better)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(ks):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
