"""Published anchors and the seed papers' claims, each with a verdict computed from our numbers.

A :class:`Claim` holds what was claimed (and where), our number(s), and a verdict:

* ``reproduced``: our numbers agree. For a published value, ``|ours - published| <= tol + 2 s``
  (``s`` our std over seeds, ``tol`` the tolerance of the quantity, :data:`TOLERANCE`); for an ordering
  ("A beats B"), ``mean_A - mean_B`` has the claimed sign and exceeds ``s_A + s_B`` (any margin with
  one seed);
* ``not reproduced``: the numbers are there and disagree (or the ordering is within the seed spread);
* ``not comparable``: we do not run what the claim is about (a method absent from the run, a model not
  trained here), so no number can confirm or refute it.

The method names below are data (the claims are about those methods), not imports.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .aggregate import spread

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


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
                ok &= _finite(m) and abs(m - value) <= TOLERANCE[key] + 2 * (s or 0.0)
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


# --------------------------------------------------------------------------- attribution

#: the seed's modified-BP family (arXiv:2503.11160) and the plain gradient it is contrasted with
MODIFIED_BP = ("gbp", "rectgrad", "lrp", "dtd")
GRADIENT = "gradient"


def _family(table: dict[str, dict[str, float]]) -> dict[str, str]:
    """label -> method name for the labels of the modified-BP family present in ``table``."""
    out = {}
    for label in table:
        base = label.split("(", 1)[0]
        if base in MODIFIED_BP:
            out[label] = base
    return out


def attribution_claims(res: dict[str, Any]) -> list[Claim]:
    claims = []
    src = "Zheng, Sang & Xu 2025 (seed, arXiv:2503.11160)"
    align = res.get("input alignment (trained digits CNN)", {})
    rand_key = next((k for k in res if k.startswith("randomization: sign-flip SSIM")), None)
    checks = [
        ("GBP, RectGrad, LRP and DTD align with the input more than the gradient (trained digits CNN)",
         align, "mean cos(A, x)"),
    ]
    if rand_key:
        checks.append(("GBP, RectGrad, LRP and DTD stay similar to the original under top-layer randomization, "
                       "the gradient does not (sign-flip SSIM after the first block)", res[rand_key], None))
    vgg = res.get("alignment on random VGG-16", {})
    if vgg:
        checks.append(("GBP and LRP z+ align with the input even on a randomly initialized network "
                       "(more than the gradient, random VGG-16)",
                       {k: v for k, v in vgg.items() if k.startswith("gbp") or "z+" in k or "zplus" in k
                        or k == GRADIENT}, "input alignment (random VGG-16)"))
    for text, table, key in checks:
        fam = _family(table)
        if GRADIENT not in table or not fam:
            claims.append(Claim("attribution", text, src, "-", NOT_COMPARABLE,
                                "the gradient or the modified-BP methods are not in this run"))
            continue

        def value(label: str, table: dict = table, key: str | None = key) -> float:
            row = table[label]
            return row[key] if key is not None else row[next(iter(row))]

        g = value(GRADIENT)
        worse = [lbl for lbl in fam if not (_finite(value(lbl)) and value(lbl) > g)]
        ours = f"gradient {g:.3f}; " + ", ".join(f"{lbl} {value(lbl):.3f}" for lbl in fam)
        claims.append(Claim("attribution", text, src, ours, NOT_REPRODUCED if worse else REPRODUCED,
                            f"not above the gradient: {', '.join(worse)}" if worse else
                            "one seed (a single trained model); digits, not ImageNet"))
    return claims


# --------------------------------------------------------------------------- defenses and metrics


def robustness_claims(res: dict[str, Any]) -> list[Claim]:
    """The AALP seed (arXiv:2005.11904): adaptive logit pairing is more robust than plain ALP."""
    table = res.get("table", {})
    text = "AALP is more robust (worst-case accuracy) than ALP, the logit pairing it adapts"
    src = "Wu et al. 2024 (seed, arXiv:2005.11904)"
    aalp = [k for k in table if k.split("(", 1)[0] == "aalp"]
    if "alp" not in table or not aalp:
        return [Claim("robustness", text, src, "-", NOT_COMPARABLE, "ALP and AALP are not both trained in this run")]
    b, sb = table["alp"]["worst_case_accuracy"], spread(res, "table", "alp", "worst_case_accuracy")[0]
    out = []
    for label in aalp:
        a, sa = table[label]["worst_case_accuracy"], spread(res, "table", label, "worst_case_accuracy")[0]
        out.append(Claim("robustness", text, src, f"{label} {_pm(a, sa)} vs alp {_pm(b, sb)}", _order(a, sa, b, sb),
                         "digits CNN, L-inf eps in the [0,1] pixel scale; the paper used CIFAR-10/MNIST"))
    return out


def metrics_claims(res: dict[str, Any]) -> list[Claim]:
    """The ITID seed (arXiv:1911.12603): invariance enhancement raises hypothesis invariance."""
    itid = res.get("table", {}).get("itid", {})
    text = "training with invariance enhancement raises hypothesis invariance (inv_hard) over plain training"
    src = "Zheng et al. (seed, arXiv:1911.12603)"
    if "plain" not in itid or "itid_enhance" not in itid:
        return [Claim("metrics", text, src, "-", NOT_COMPARABLE, "itid or the itid_enhance model is not in this run")]
    a, sa = itid["itid_enhance"]["inv_hard"], spread(res, "table", "itid", "itid_enhance", "inv_hard")[0]
    b, sb = itid["plain"]["inv_hard"], spread(res, "table", "itid", "plain", "inv_hard")[0]
    return [Claim("metrics", text, src, f"itid_enhance {_pm(a, sa)} vs plain {_pm(b, sb)}", _order(a, sa, b, sb))]


CLAIMS = {"generative": generative_claims, "attribution": attribution_claims, "robustness": robustness_claims,
          "metrics": metrics_claims}


def all_claims(stages: dict[str, dict[str, Any]]) -> list[Claim]:
    return [c for stage, fn in CLAIMS.items() if stage in stages for c in fn(stages[stage])]
