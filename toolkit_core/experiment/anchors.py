"""Published anchors and the seed papers' claims, each with a verdict computed from our numbers.

A :class:`Claim` holds what was claimed (and where), our number(s), and a verdict:

* ``reproduced``: our numbers agree. For a published value, ``|ours - published| <= tol + 2 s``
  (``s`` our std over seeds, ``tol`` the tolerance of the quantity, :data:`TOLERANCE`); for an ordering
  ("A beats B"), ``mean_A - mean_B`` has the claimed sign and exceeds ``s_A + s_B`` (any margin with
  one seed);
* ``not reproduced``: the numbers are there and disagree (or the ordering is within the seed spread);
* ``not comparable``: we do not run what the claim is about (a method absent from the run, a model not
  trained here), so no number can confirm or refute it.

The protocol's anchors (PacGAN Table 1 for the toy mixtures) live here; what a method's paper claims
is declared by the method's class (:meth:`toolkit_core.methods.Method.experiment_claims`), which
builds its :class:`Claim` objects with the helpers below (:func:`ordered`, :func:`above_reference`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .aggregate import finite_number, spread

REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE = "reproduced", "not reproduced", "not comparable"

#: PacGAN Table 1 (Lin et al. 2018, arXiv:1712.04086): modes / high-quality % / reverse KL.
PACGAN_TABLE1 = {
    "ring": {"GAN": (6.3, 98.2, 0.45), "PacGAN2": (7.9, 95.6, 0.07), "PacGAN4": (7.8, 95.9, 0.07)},
    "grid": {"GAN": (17.3, 94.8, 0.70), "PacGAN2": (23.8, 91.3, 0.13), "PacGAN4": (24.8, 93.6, 0.04)},
}
#: How far a published value may sit from ours and still count as reproduced (before the seed spread).
TOLERANCE = {"modes": 1.0, "high quality %": 5.0, "reverse KL": 0.1}


@dataclasses.dataclass
class Claim:
    stage: str
    claim: str
    source: str
    ours: str
    verdict: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _order(a: float, sa: float | None, b: float, sb: float | None, higher: bool = True) -> str:
    diff = (a - b) if higher else (b - a)
    return REPRODUCED if diff > (sa or 0.0) + (sb or 0.0) and diff > 0 else NOT_REPRODUCED


def _pm(v: float, s: float | None) -> str:
    return f"{v:.3g}" if s is None else f"{v:.3g} ± {s:.2g}"


# --------------------------------------------------------------------------- generative


def generative_claims(res: dict[str, Any]) -> list[Claim]:
    """PacGAN Table 1 rows against our plain GAN; the MMCGAN seed's claim against our paired runs."""
    table = res.get("table", {})
    claims = []
    for mixture, rows in PACGAN_TABLE1.items():
        ours_gan = next((v for k, v in table.items() if k.startswith(f"{mixture} / ") and k.endswith("(GAN)")), None)
        for name, pub in rows.items():
            claim = (f"{name} on the {mixture}: {pub[0]} modes, {pub[1]}% high quality, reverse KL {pub[2]}")
            if name != "GAN":
                claims.append(Claim("generative", claim, "PacGAN Table 1", "-", NOT_COMPARABLE,
                                    "packing is not run here"))
                continue
            if ours_gan is None:
                claims.append(Claim("generative", claim, "PacGAN Table 1", "-", NOT_COMPARABLE,
                                    f"no unpaired GAN was trained on the {mixture}"))
                continue
            ok, shown = True, []
            for key, value in zip(TOLERANCE, pub):
                m, s = ours_gan[key], ours_gan.get(f"{key} std")
                s = s if ours_gan.get("seeds", 1) > 1 else None
                shown.append(f"{_pm(m, s)} {key}")
                ok &= finite_number(m) and abs(m - value) <= TOLERANCE[key] + 2 * (s or 0.0)
            claims.append(Claim("generative", claim, "PacGAN Table 1", ", ".join(shown),
                                REPRODUCED if ok else NOT_REPRODUCED,
                                "same mixtures, sample count and thresholds; our generator/discriminator "
                                "(2-layer MLPs) and training budget are smaller than the paper's"))
        paired = {k: v for k, v in table.items() if k.startswith(f"{mixture} / ") and k.endswith("(paired)")}
        for label, row in paired.items():
            claim = f"a manifold prior with pairing covers more modes than the plain GAN ({mixture})"
            if ours_gan is None:
                claims.append(Claim("generative", claim, "MMCGAN (seed)", "-", NOT_COMPARABLE,
                                    "no plain GAN to compare with"))
                continue
            n = row.get("seeds", 1)
            sa = row.get("modes std") if n > 1 else None
            sb = ours_gan.get("modes std") if n > 1 else None
            verdict = _order(row["modes"], sa, ours_gan["modes"], sb)
            if verdict != REPRODUCED and row["modes"] == row.get("of modes") and ours_gan["modes"] == row["modes"]:
                verdict, note = NOT_REPRODUCED, "both capture every mode: no collapse for the prior to fix"
            else:
                note = ""
            prior = label.split(" / ", 1)[1]
            ours = (f"{prior}: {_pm(row['modes'], sa)} vs GAN {_pm(ours_gan['modes'], sb)}"
                    f" of {row.get('of modes')} modes")
            claims.append(Claim("generative", claim, "MMCGAN (seed)", ours, verdict, note))
    return claims


# --------------------------------------------------------------------------- helpers for the methods' claims


def first_key(res: dict[str, Any], prefix: str) -> str | None:
    """The first key of a stage result that starts with ``prefix`` (stage keys name the model/data)."""
    return next((k for k in res if k.startswith(prefix)), None)


def above_reference(stage: str, claim: str, source: str, table: dict[str, dict[str, float]], labels: list[str],
                    reference: str, key: str | None = None, note: str = "") -> Claim:
    """"Every one of ``labels`` scores above ``reference``" in ``table`` (``key``: the column, else the first).

    ``not comparable`` when the reference or none of the labels is in the table; ``not reproduced``
    names the labels that are not above it.
    """
    present = [lbl for lbl in labels if lbl in table]
    if reference not in table or not present:
        return Claim(stage, claim, source, "-", NOT_COMPARABLE, f"{reference} or the method is not in this run")

    def value(label: str) -> float:
        row = table[label]
        return row[key] if key is not None else row[next(iter(row))]

    ref = value(reference)
    worse = [lbl for lbl in present if not (finite_number(value(lbl)) and finite_number(ref) and value(lbl) > ref)]
    ours = f"{reference} {ref:.3f}; " + ", ".join(f"{lbl} {value(lbl):.3f}" for lbl in present)
    return Claim(stage, claim, source, ours, NOT_REPRODUCED if worse else REPRODUCED,
                 f"not above {reference}: {', '.join(worse)}" if worse else note)


def ordered(stage: str, claim: str, source: str, res: dict[str, Any], a: tuple[str, ...], b: tuple[str, ...],
            names: tuple[str, str], higher: bool = True, note: str = "") -> Claim:
    """"The number at path ``a`` beats the one at path ``b``" (higher, or lower with ``higher=False``).

    Paths are into an aggregated stage result (``("table", "aalp", "worst_case_accuracy")``); the
    verdict uses the seed spread (:func:`_order`); a missing number makes it ``not comparable``.
    """
    from .aggregate import lookup

    va, vb = lookup(res, a), lookup(res, b)
    if not (finite_number(va) and finite_number(vb)):
        return Claim(stage, claim, source, "-", NOT_COMPARABLE, f"{names[0]} and {names[1]} are not both in this run")
    sa, sb = spread(res, *a)[0], spread(res, *b)[0]
    return Claim(stage, claim, source, f"{names[0]} {_pm(va, sa)} vs {names[1]} {_pm(vb, sb)}",
                 _order(va, sa, vb, sb, higher), note)


#: the seed on modified backpropagation (Zheng, Sang & Xu 2025)
MODIFIED_BP_SOURCE = "Zheng, Sang & Xu 2025 (seed, arXiv:2503.11160)"


def modified_bp_claims(stage: str, result: dict[str, Any], labels: list[str], reference: str,
                       vgg_labels: list[str] | None = None, source: str = MODIFIED_BP_SOURCE) -> list[Claim]:
    """The modified-backprop seed's claims for one method (its ``labels``) against ``reference`` (the gradient).

    On the attribution stage: the maps align with the input more than the reference's (trained model),
    stay more similar to the original under top-layer randomization (sign-flip SSIM after the first
    block), and, for ``vgg_labels``, align with the input even on a randomly initialized VGG-16.
    """
    if stage != "attribution" or not labels:
        return []
    name = labels[0].split("(", 1)[0]
    out = []
    align = first_key(result, "input alignment (trained")
    if align is not None:
        model = align[len("input alignment (trained "):-1]
        out.append(above_reference(stage, f"{name} aligns with the input more than the {reference} ({model})",
                                   source, result[align], labels, reference, "mean cos(A, x)",
                                   "one trained model (the first seed); the seed's claim is about ImageNet models"))
    rand = first_key(result, "randomization: sign-flip SSIM")
    if rand is not None:
        out.append(above_reference(stage, f"{name} stays closer to its original map than the {reference} when "
                                   "the top layer is randomized (sign-flip SSIM after the first block)",
                                   source, result[rand], labels, reference,
                                   note="high similarity under randomization means the map ignores the model"))
    vgg = result.get("alignment on random VGG-16", {})
    if vgg and vgg_labels:
        out.append(above_reference(stage, f"{name} aligns with the input even on a randomly initialized "
                                   f"VGG-16 (more than the {reference})", source, vgg, list(vgg_labels), reference,
                                   "input alignment (random VGG-16)"))
    return out


JIANG = "Jiang et al. 2019 (arXiv:1912.02178)"


def gap_claim(stage: str, claim: str, source: str, result: dict[str, Any], key: str, predicts: bool = True,
              by: str = "tau", note: str = "") -> Claim:
    """A claim about how the measure ``key`` ranks models by their generalization gap (stage ``generalization``).

    ``predicts``: the claim says it does (reproduced when the 95% interval of ``tau_dir``, or of
    ``Psi`` with ``by="psi"``, lies above 0) or does not (reproduced when the interval is not above 0).
    """
    c = result.get("correlations", {}).get(key)
    if stage != "generalization" or c is None:
        return Claim("generalization", claim, source, "-", NOT_COMPARABLE, f"{key} was not measured in this run")
    value, (lo, hi) = (c["tau_dir"], c["tau_ci"]) if by == "tau" else (c["psi"], c["psi_ci"])
    def ci(v: float, lo_hi: list[float]) -> str:
        return f"{v:+.2f} [{lo_hi[0]:+.2f}, {lo_hi[1]:+.2f}]" if all(finite_number(x) for x in lo_hi) else \
            f"{v:+.2f} [no interval]"

    ours = f"{key}: tau_dir {ci(c['tau_dir'], c['tau_ci'])}, Psi {ci(c['psi'], c['psi_ci'])} ({c['n']} models)"
    if not (finite_number(lo) and finite_number(hi)):
        return Claim("generalization", claim, source, ours, NOT_COMPARABLE,
                     "too few models or groups for an interval (quick run: one group per factor)")
    above = lo > 0
    return Claim("generalization", claim, source, ours, REPRODUCED if above == predicts else NOT_REPRODUCED, note)


def generalization_claims(res: dict[str, Any]) -> list[Claim]:
    """Jiang et al.'s finding about the study's own baseline: the parameter count does not predict the gap."""
    return [gap_claim("generalization", "the parameter count does not predict the generalization gap", JIANG, res,
                      "baseline.param_count", predicts=False,
                      note="Jiang et al. find it among the weakest measures (tau near 0 or negative)")]


def method_claims(stages: dict[str, dict[str, Any]], methods: dict[str, list[dict[str, Any]]]) -> list[Claim]:
    """What each configured method class claims (:meth:`Method.experiment_claims`), checked on ``stages``.

    ``methods``: the config's sections (``{"defenses": [{"name", "label", ...}], ...}``). A class is
    asked once, with every label it has in this run; a class that fails is reported, not fatal.
    """
    from ..catalog import get_info

    labels: dict[str, list[str]] = {}
    for specs in methods.values():
        for spec in specs:
            labels.setdefault(spec["name"], []).append(spec.get("label", spec["name"]))
    out: list[Claim] = []
    for name, own in labels.items():
        try:
            cls = get_info(name).cls
        except Exception:  # noqa: BLE001 - a method no longer installed has nothing to claim
            continue
        for stage, res in stages.items():
            try:
                out += list(cls.experiment_claims(stage, res, own))
            except Exception as exc:  # noqa: BLE001 - one broken claim never hides the report
                out.append(Claim(stage, f"claims of {name}", name, "-", NOT_COMPARABLE,
                                 f"checking failed: {type(exc).__name__}: {exc}"))
    return out


def all_claims(stages: dict[str, dict[str, Any]],
               methods: dict[str, list[dict[str, Any]]] | None = None) -> list[Claim]:
    """The published anchors of the protocols (PacGAN Table 1) and every configured method's claims."""
    out = generative_claims(stages["generative"]) if "generative" in stages else []
    if "generalization" in stages and stages["generalization"].get("correlations"):
        out += generalization_claims(stages["generalization"])
    return out + (method_claims(stages, methods) if methods else [])
