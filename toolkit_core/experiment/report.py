"""A self-contained HTML report: every number from results.json, every figure embedded as base64.

The page opens with what ran (only the stages and methods of this run), the health checks
(:mod:`.health`) and the published anchors with their verdicts (:mod:`.anchors`). Each section then
says in two or three sentences what is measured, on which data and model, under which budget, and how
to read its figure; numbers compared across models are ``mean ± std`` over seeds. Every column name
carries its one-line definition (the metric's own ``definitions``) on hover, and the glossary at the
end lists them all. Wide tables scroll inside their box; a metric's per-part breakdown folds away.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from .aggregate import lookup
from .config import STAGE_METHODS, STAGES

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem;line-height:1.45}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1rem;margin:1.2rem 0 .3rem} p,li{max-width:60rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem} td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:right;white-space:nowrap} th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
th[title]{text-decoration:underline dotted;cursor:help}
td.text,th.text{text-align:left;white-space:normal;min-width:12rem}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4rem 0;display:block}
.meta{color:#555;font-size:.85rem} .intro{margin:.4rem 0 .8rem}
.err{color:#a00} code{background:#f5f5f5;padding:0 .2rem;overflow-wrap:anywhere}
.flags{border:1px solid #e0b4b4;background:#fff6f6;padding:.5rem 1rem;border-radius:4px}
.ok{border:1px solid #b4e0b4;background:#f6fff6;padding:.5rem 1rem;border-radius:4px}
tr.flagged td{background:#fff0f0} .v-reproduced{color:#060;font-weight:600}
.v-not-reproduced{color:#a00;font-weight:600} .v-not-comparable{color:#666;font-weight:600}
nav a{margin-right:.6rem} details{margin:.4rem 0} summary{cursor:pointer;color:#245}
dl.glossary dt{font-weight:600;margin-top:.4rem} dl.glossary dd{margin-left:1.2rem}
"""

#: Our own column names (metric keys get theirs from the metric classes).
COLUMN_DEFINITIONS = {
    "train": "accuracy on the training data the model was fitted on",
    "test": "accuracy on held-out test data",
    "train_acc": "accuracy on the training data the model was fitted on",
    "test_acc": "accuracy on held-out test data",
    "epochs": "training epochs",
    "time_s": "training wall time in seconds",
    "clean": "accuracy on unperturbed test data",
    "worst case": "share of test points classified correctly clean and under every attack",
    "modes": "mixture modes with at least one generated sample within 3 std (mean over seeds)",
    "high quality %": "percent of generated samples within 3 std of their nearest mode",
    "reverse KL": "KL(generated mode histogram || uniform); 0 when every mode is hit equally often",
    "mean cos(A, x)": "cosine between the attribution map and the input (input alignment)",
    "input alignment (random VGG-16)": "cosine between the map and the input on a randomly initialized VGG-16",
}


def _fmt(v: Any, std: Any = None) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        text = f"{v:.4g}"
        if isinstance(std, (int, float)) and not isinstance(std, bool) and std == std:
            text += f" ± {std:.2g}"
        return text
    if v is None:
        return "n/a"
    return html.escape(str(v))


def _th(name: str, definitions: dict[str, str], label: str | None = None) -> str:
    label = html.escape(name if label is None else label)
    base = name.split("/", 1)[0]
    d = definitions.get(name) or definitions.get(base) or COLUMN_DEFINITIONS.get(name)
    return f'<th title="{html.escape(d)}">{label}</th>' if d else f"<th>{label}</th>"


def _table(rows: dict[str, dict[str, Any]], first: str = "", std: dict[str, Any] | None = None,
           definitions: dict[str, str] | None = None, flagged: set[str] = frozenset(),
           arrows: dict[str, bool] | None = None) -> str:
    """A table in a horizontally scrolling box; cells ``mean ± std`` when ``std`` mirrors ``rows``."""
    if not rows:
        return "<p>(nothing)</p>"
    definitions = definitions or {}
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols and not isinstance(r[c], (dict, list))]

    def head(c: str) -> str:
        if arrows is not None and c in arrows:
            return _th(c, definitions, f"{c} {'↑' if arrows[c] else '↓'}")
        return _th(c, definitions)

    body = []
    for k, r in rows.items():
        cls = ' class="flagged"' if k in flagged else ""
        cells = "".join(f"<td>{_fmt(r.get(c), lookup(std or {}, (k, c)))}</td>" for c in cols)
        body.append(f"<tr{cls}><td>{html.escape(str(k))}{' ⚠' if k in flagged else ''}</td>{cells}</tr>")
    return (f'<div class="scroll"><table><tr><th>{html.escape(first)}</th>{"".join(head(c) for c in cols)}</tr>'
            f'{"".join(body)}</table></div>')


def _img(out: Path, name: str) -> str:
    path = out / name
    if not path.exists():
        return f'<p class="err">missing figure {html.escape(name)}</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    width = ""
    try:  # show the figure at its natural size (never wider than the page)
        import struct

        w = struct.unpack(">I", path.read_bytes()[16:20])[0]
        width = f' width="{w}"'
    except Exception:  # noqa: BLE001 - a figure without a PNG header still shows
        pass
    return f'<img alt="{html.escape(name)}"{width} src="data:image/png;base64,{data}">'


# --------------------------------------------------------------------------- prose


def _attack_text(m: dict[str, Any], full: dict[str, Any] | None = None) -> str:
    """``label (L-inf, eps ..., steps)`` from the parameters the attack ran with (else those configured)."""
    p = dict(m.get("params", {}))
    if full:
        from .health import _params

        p = {**_params(full), **p}
    parts = []
    if "norm" in p:
        parts.append("L∞" if str(p["norm"]).lower() in ("inf", "linf", "l_inf") else f"L{p['norm']}")
    else:
        parts.append("L∞")
    if "eps" in p:
        parts.append(f"eps {p['eps']} (pixels in [0, 1])")
    if full and full.get("components"):  # an ensemble: its members' per-sample worst case
        parts.append("ensemble of " + ", ".join(map(str, full["components"])) + ", per-sample worst case")
    elif "n_queries" in p:
        parts.append(f"{p['n_queries']} queries, black-box")
    elif "steps" in p:
        parts.append(f"{p['steps']} steps" + (f" of {p['alpha']}" if "alpha" in p else ""))
    else:
        parts.append("one step")
    if p.get("restarts", 1) not in (0, 1):
        parts.append(f"{p['restarts']} restarts")
    return f"{html.escape(m['label'])} ({', '.join(parts)})"


def _seeds_phrase(cfg: dict[str, Any]) -> str:
    n = cfg.get("seeds", 1)
    return f"mean ± std over {n} seeds ({cfg['seed']}..{cfg['seed'] + n - 1})" if n > 1 else \
        f"a single seed ({cfg['seed']}), so no spread is shown"


def _intro(stage: str, res: dict[str, Any], cfg: dict[str, Any], d: dict[str, Any]) -> str:
    s = cfg["settings"]
    data = d["stages"].get("train", {}).get("data", {})
    n_train = data.get("train", "?")
    n_test = data.get("test", "?")
    size = s["data"].get("size", "?")
    workload = cfg.get("workload") or {}
    user = (workload.get("model", "digits CNN") != "digits CNN"  # a user's [model]/[data] (config.names)
            or not str(workload.get("data", "scikit-learn digits")).startswith("scikit-learn digits"))
    if user:
        model = workload.get("model", "the model")
        train_data = f"{n_train} training images of {workload.get('data', 'the data')}"
        items = "images"
    else:
        model = f"a small CNN (width {s['model'].get('width')}, hidden {s['model'].get('hidden')})"
        train_data = f"{n_train} scikit-learn digits upsampled to {size}×{size} px (pixels in [0, 1])"
        items = "digits"
    defenses = [m["label"] for m in cfg["methods"].get("defenses", [])]
    t = s["train"]
    if stage == "train":
        attacks = {m["attack"]["name"] + " (" + ", ".join(f"{k} {v}" for k, v in m["attack"]["params"].items()
                                                           if k in ("eps", "steps", "alpha")) + ")"
                   for m in cfg["methods"].get("defenses", []) if m.get("attack")}
        how = (f"plainly and with each defense ({', '.join(defenses)})"
               + (f"; defenses that attack during training use {'; '.join(sorted(attacks))}" if attacks else "")
               if defenses else "plainly (no defense is configured in this run)")
        return (f"Clean accuracy of {model} trained for {t['epochs']} epochs ({t['optimizer']}, lr {t['lr']}) "
                f"on {train_data}, {how}. "
                f"Accuracy is measured on the training {items} and on {n_test} held-out test {items}; bars show "
                f"{_seeds_phrase(cfg)}. A large train/test gap or a model at chance (0.1) is flagged above.")
    if stage == "robustness":
        table = res.get("table", {})
        ran = next(iter(table.values()), {}).get("attacks", {})
        attacks = "; ".join(_attack_text(m, ran.get(m["label"])) for m in cfg["methods"].get("attacks", [])) or "none"
        return (f"Accuracy of every trained model on {n_test} test {items}, clean and under each attack: "
                f"{attacks}. Attacks run only on correctly classified points; a point counts in the "
                f"worst case only if it survives every attack, so worst case ≤ each attack ≤ clean. "
                f"Higher is better; bars show {_seeds_phrase(cfg)}, hatched bars belong to flagged models.")
    if stage == "attribution":
        a = s["analysis"]
        photos = (f" and, for the predicted class, on a randomly initialized VGG-16 ({a['photo_size']} px "
                  "photos bundled with scikit-image)" if a["photos"] else "")
        return (f"Heatmaps of every attribution method for the true class of {a['samples']} test {items} on the "
                f"plainly trained model{photos}; red is positive, blue negative relevance. Cascading "
                "randomization re-initializes the layers from the logits down and compares each map with the "
                "original (sign-flip SSIM, 1 = unchanged: a method insensitive to the model scores high); input "
                "alignment is the cosine between map and input, and sufficiency keeps the top-k% pixels and "
                "counts the predictions that stay the same. One trained model (the first seed).")
    if stage == "generative":
        g = s["generative"]
        return (f"A GAN with 2-layer MLPs (hidden {g['hidden']}) trained on {g['train_points']} points of each "
                f"PacGAN toy mixture ({', '.join(g['mixtures'])}; ring: 8 Gaussians of std 0.01, grid: 25 of std "
                f"0.05) for {g['epochs']} epochs (batch {g['batch_size']}, Adam lr {g['lr']}"
                f"{', the last quarter at lr / 10' if g.get('lr_drop') else ''}), once per prior: a prior "
                f"without codes gives the plain GAN, the others are paired with their codes "
                f"(weight {g['pair_weight']}, the noise dimensions "
                f"{'at 0' if g.get('pair_noise') == 'zero' else 'sampled'} in the pairing term). "
                f"{g['samples']} generated samples are scored as in PacGAN: a mode is captured when a sample lies "
                f"within 3 std of it; the scatter shows the samples (blue) and the modes (red ×). "
                f"{g['seeds']} seed(s) per run.")
    if stage == "generalization":
        gs = s["generalization"]
        lo_hi = res.get("gap range") or [float("nan")] * 2
        return (f"Jiang et al.'s protocol (arXiv:1912.02178), sized to this machine: ReLU MLPs on the native "
                f"8×8 digits, 3 levels of each factor ({', '.join(gs['factors'])}), {gs['bases']} random "
                f"setting(s) of the other factors per factor, each model trained with SGD until its training "
                f"cross-entropy is ≤ {gs['target_ce']} (at most {gs['max_steps']} steps; models that do not "
                f"get there are left out), so the gap (train - test accuracy; here {lo_hi[0]:.3f} to "
                f"{lo_hi[1]:.3f}) does not track under-fitting. Every metric is measured on up to {gs['samples']} "
                f"of each model's training images, beside two baselines (parameter count, inverse squared "
                f"margin). tau_dir is Kendall's tau against the gap, signed so that positive means the measure "
                f"ranks models in the direction it claims; Psi averages it within groups of models that differ "
                f"in one factor only. Brackets: 95% bootstrap intervals ({gs['bootstrap']} resamples); an "
                f"interval containing 0 is no evidence either way.")
    if stage == "datasets":
        budgets = res.get("budgets", {})
        how = "; ".join(f"{html.escape(k)}: {b.get('epochs')} epochs, {b.get('optimizer')} lr {b.get('lr')}, batch "
                        f"{b.get('batch_size')}" for k, b in budgets.items()) or "none ran"
        return ("Every data set plugin, each with the training budget its class declares "
                f"(<code>experiment_training</code>; {how}): a fresh model (the class's own, else an MLP for flat "
                "inputs or the digits CNN for images) is trained on the plugin's training split and tested on its "
                "test split, next to chance; where the class names a reference data set (e.g. the clean data "
                "behind a poisoned set) the same model trained on it is shown beside; further columns are the "
                "data set's own diagnostics (e.g. a randomization test). One seed.")
    if stage == "detectors":
        n = res.get("normal", "?")
        return (f"Every detector, fitted on the training {items} with the plainly trained model "
                f"({html.escape(str(res.get('model', 'plain')))}), scores {n} test {items} (normal) and as many "
                f"abnormal inputs: {', '.join(html.escape(a) for a in res.get('abnormal', []))}. The number is the "
                "AUROC (1 = every abnormal input scores above every normal one, 0.5 = chance); the adversarial "
                "set is crafted against the same model with the training attack. One seed.")
    if stage == "patches":
        return ("Every weight patch, extracted from each defended model and the plainly trained one "
                "(<code>extract(defended, plain)</code>), is added to a copy of the plain model with each "
                "coefficient its class declares (<code>experiment_coefficients</code>): coefficient 0 is the "
                f"plain model, 1 the full patch. Clean and adversarial accuracy "
                f"({html.escape(str(res.get('attack') or 'no attack'))}, crafted against each patched copy) on "
                f"the first test {items}. Both models share their initialization (same seed), as weight "
                "arithmetic needs. One seed.")
    if stage == "metrics":
        return (f"Every generalization metric on every trained model, computed on {n_test} test {items}. Each "
                f"panel shows a metric's headline value per model ({_seeds_phrase(cfg)}); grey bars are flagged "
                "models (at chance) or non-finite values, left out of the axis range. The arrow after a column "
                "says which direction is better; hover a column for its definition (all are in the glossary).")
    return ""


def _title(stage: str, cfg: dict[str, Any]) -> str:
    defenses = bool(cfg["methods"].get("defenses"))
    model = (cfg.get("workload") or {}).get("model", "digits CNN")
    return {
        "train": f"Training: plain and defended {model}s" if defenses else f"Training: a plain {model}",
        "robustness": "Robustness: clean, per-attack and worst-case accuracy",
        "attribution": "Attribution: heatmaps, parameter randomization, alignment, sufficiency",
        "generative": "Generative priors on the PacGAN mixtures",
        "metrics": "Generalization metrics",
        "generalization": "Generalization study: which measures predict the gap? (Jiang et al. 2019)",
        "datasets": "Data set plugins: what a model learns from each",
        "detectors": "Detectors of abnormal inputs: AUROC",
        "patches": "Weight patches: accuracy vs coefficient",
    }.get(stage, stage)


def _value_text(v: Any) -> str | None:
    if isinstance(v, dict) and "label" in v:  # a nested method (a defense's training attack)
        return str(v["label"])
    if isinstance(v, (bool, int, float, str)) or v is None:
        return str(v)
    if isinstance(v, (list, tuple)) and len(v) <= 6 and all(isinstance(x, (int, float, str)) for x in v):
        return "[" + ", ".join(map(str, v)) + "]"
    return None


def _definitions(stage: str, cfg: dict[str, Any]) -> str:
    """How each method of the section is defined in this run: its class's summary and citation, and
    every parameter it ran with (the config's, else the constructor's default)."""
    from ..catalog import get_info

    specs = [m for section in STAGE_METHODS.get(stage, ()) for m in cfg.get("methods", {}).get(section, [])]
    items = []
    for m in specs:
        try:
            info = get_info(m["name"])
        except Exception:  # noqa: BLE001 - a method no longer installed is still listed by label
            items.append(f"<li><b>{html.escape(m['label'])}</b></li>")
            continue
        params = {p.name: p.default for p in info.parameters if not p.required}
        params.update(m.get("params", {}))
        if m.get("attack"):
            params["attack"] = m["attack"]
        shown = [f"{k}={t}" for k, v in params.items() if (t := _value_text(v)) is not None]
        items.append(f"<li><b>{html.escape(m['label'])}</b>: {html.escape(info.summary)} "
                     f"<span class='meta'>({html.escape(info.citation)}; parameters: "
                     f"<code>{html.escape(', '.join(shown) or 'none')}</code>)</span></li>")
    if not items:
        return ""
    return (f"<details{' open' if len(items) <= 6 else ''}><summary>How each method is defined in this run "
            f"({len(items)})</summary><ul class='defs'>{''.join(items)}</ul></details>")


# --------------------------------------------------------------------------- per-stage tables


def _metric_tables(res: dict[str, Any], flagged: set[str]) -> tuple[str, dict[str, str]]:
    parts, glossary = [], {}
    over = res.get("over_seeds") or {}
    std_all = over.get("std", {}).get("table", {}) if len(over.get("seeds", [])) > 1 else {}
    for name, per_model in res.get("table", {}).items():
        defs = res.get("definitions", {}).get(name, {})
        hib = res.get("higher_is_better", {}).get(name, {})
        for k in dict.fromkeys(k.split("/", 1)[0] for vals in per_model.values() for k in vals):
            glossary[f"{name}: {k}"] = defs.get(k, "")
        heads = {m: {k: v for k, v in vals.items() if "/" not in k} for m, vals in per_model.items()}
        parts.append(f"<h3 id='metric-{html.escape(name)}'>{html.escape(name)}</h3>")
        parts.append(_table(heads, "model", std_all.get(name), defs, flagged, hib))
        parts_keys = sorted({k for vals in per_model.values() for k in vals if "/" in k})
        if parts_keys:  # the breakdown, transposed: one row per part, one column per model
            rows = {k: {m: per_model[m].get(k) for m in per_model} for k in parts_keys}
            parts.append(f"<details><summary>per-part breakdown ({len(parts_keys)} values)</summary>"
                         f"{_table(rows, 'key')}</details>")
    return "\n".join(parts), glossary


def _ci(v: float, ci: list[float]) -> str:
    if not isinstance(v, (int, float)) or v != v:
        return "n/a"
    if not all(isinstance(c, (int, float)) and c == c for c in ci):
        return f"{v:+.2f} [no interval]"
    return f"{v:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _gap_tables(res: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The study's correlation table (one row per measure) and its models (folded away)."""
    glossary = {}
    corr = res.get("correlations", {})
    defs = res.get("definitions", {})
    rows = {}
    for key in sorted(corr, key=lambda k: -corr[k]["tau_dir"] if corr[k]["tau_dir"] == corr[k]["tau_dir"] else 2):
        c = corr[key]
        label, _, name = key.partition(".")
        glossary[f"{label}: {name}"] = (defs.get(label) or {}).get(name, "")
        rows[key] = {"better": c["better"], "tau_dir [95% CI]": _ci(c["tau_dir"], c["tau_ci"]),
                     "Psi [95% CI]": _ci(c["psi"], c["psi_ci"]), "reading": c["reading"],
                     **{f"psi[{f}]": v for f, v in c.get("psi_per_factor", {}).items()}}
    models = res.get("models", [])
    model_rows = {f"{i + 1}: {m['group'][0]}={m['hp'][m['group'][0]]}": {
        **{k: v for k, v in m["hp"].items()}, "steps": m["steps"], "train CE": m["train_ce"],
        "train_acc": m["train_acc"], "test_acc": m["test_acc"], "gap": m["gap"],
        "reached": m["reached"]} for i, m in enumerate(models)}
    text = (_table(rows, "measure") +
            f"<details><summary>the {len(models)} models (factor levels, steps to the target loss, "
            f"accuracies)</summary>{_table(model_rows, 'model')}</details>")
    for name, why in res.get("skipped", {}).items():
        text += f"<p class='meta'>{html.escape(name)}: not run here ({html.escape(why)})</p>"
    return text, glossary


def _stage_tables(stage: str, res: dict[str, Any], flagged: set[str]) -> tuple[str, dict[str, str]]:
    parts: list[str] = []
    glossary: dict[str, str] = {}
    over = res.get("over_seeds") or {}
    std = over.get("std", {}) if len(over.get("seeds", [])) > 1 else {}  # one seed: no "± 0"
    if stage == "train":
        cols = ("defense", "epochs", "train_acc", "test_acc", "time_s")
        rows = {k: {c: v[c] for c in cols if c in v} for k, v in res.get("models", {}).items()}
        parts.append(_table(rows, "model", std.get("models"), flagged=flagged))
        glossary.update({c: COLUMN_DEFINITIONS[c] for c in ("train_acc", "test_acc")})
    elif stage == "robustness":
        from .figures import fill_std, robust_columns

        table = res.get("table", {})
        rows = {m: robust_columns(v) for m, v in table.items()}
        stds = {m: robust_columns(fill_std((std.get("table") or {}).get(m) or {}, v)) for m, v in table.items()}
        parts.append(_table(rows, "model", stds, flagged=flagged))
        glossary.update({c: COLUMN_DEFINITIONS[c] for c in ("clean", "worst case")})
        for model, msgs in res.get("warnings", {}).items():
            parts.extend(f'<p class="err">{html.escape(model)}: {html.escape(m)}</p>' for m in msgs)
        cert = res.get("certification", {})
        if cert:
            parts.append("<h3>certified accuracy at L2 radius r</h3>")
            parts.append(_table({f"{m} / {c}": {f"r={r}": a for r, a in d["curve"].items()}
                                 for m, per in cert.items() for c, d in per.items()}, "model / certifier"))
    elif stage == "metrics":
        text, glossary = _metric_tables(res, flagged)
        parts.append(text)
        for name, why in res.get("skipped", {}).items():
            parts.append(f"<p class='meta'>{html.escape(name)}: not run here ({html.escape(why)})</p>")
    elif stage == "generalization":
        text, glossary = _gap_tables(res)
        parts.append(text)
    elif stage == "generative":
        rows, stds = {}, {}
        for label, row in res.get("table", {}).items():
            n = row.get("seeds", 1)
            rows[label] = {k: v for k, v in row.items() if not k.endswith(" std") and k != "seeds"}
            stds[label] = {k[:-4]: v for k, v in row.items() if k.endswith(" std") and n > 1}
            rows[label]["seeds"] = n
        parts.append("<h3>GAN runs</h3>" + _table(rows, "mixture / prior", stds))
        glossary.update({c: COLUMN_DEFINITIONS[c] for c in ("modes", "high quality %", "reverse KL")})
    elif stage in ("datasets", "detectors"):
        for name, row in res.get("table", {}).items():  # one subsection per plugin
            parts.append(f"<h3 id='{stage}-{html.escape(name)}'>{html.escape(name)}</h3>")
            parts.append(_table({name: row}, "data set" if stage == "datasets" else "detector"))
    elif stage == "patches":
        for name, per_source in res.get("table", {}).items():
            parts.append(f"<h3 id='patches-{html.escape(name)}'>{html.escape(name)}</h3>")
            names = {"clean_acc": "clean", "robust_acc": "adversarial"}  # WeightPatch.sweep's keys
            rows = {f"from {src}, c = {r['coefficient']:g}": {names.get(k, k): v for k, v in r.items()
                                                                if k != "coefficient"}
                    for src, rs in per_source.items() for r in rs}
            parts.append(_table(rows, "patched copy of the plain model"))
        for name, why in res.get("skipped", {}).items():
            parts.append(f"<p class='meta'>{html.escape(name)}: not run here ({html.escape(why)})</p>")
    else:
        for key, val in res.items():
            if key in ("figures", "summary", "errors", "over_seeds", "PacGAN Table 1 (published)"):
                continue
            if isinstance(val, dict) and val and all(isinstance(v, dict) for v in val.values()):
                parts.append(f"<h3>{html.escape(key)}</h3>" + _table(val, ""))
                for c in dict.fromkeys(c for v in val.values() for c in v):
                    if c in COLUMN_DEFINITIONS:
                        glossary[c] = COLUMN_DEFINITIONS[c]
    for where, msg in res.get("errors", {}).items():
        parts.append(f'<p class="err">{html.escape(where)}: {html.escape(msg)}</p>')
    return "\n".join(parts), glossary


def _claims_table(claims: list[dict[str, Any]]) -> str:
    if not claims:
        return ""
    rows = "".join(
        f"<tr><td class='text'>{html.escape(c['claim'])}</td><td class='text'>{html.escape(c['source'])}</td>"
        f"<td class='text'>{html.escape(c['ours'])}</td>"
        f"<td class='v-{c['verdict'].replace(' ', '-')}'>{html.escape(c['verdict'])}</td>"
        f"<td class='text'>{html.escape(c['note'])}</td></tr>" for c in claims)
    return ("<div class='scroll'><table><tr><th class='text'>claim</th><th class='text'>source</th>"
            "<th class='text'>ours</th><th>verdict</th><th class='text'>note</th></tr>" + rows + "</table></div>")


def _health_box(flags: list[dict[str, Any]]) -> str:
    if not flags:
        return ("<div class='ok'><b>Health checks:</b> no model at chance, no train/test gap above the threshold, "
                "no two models identical, no gradient-masking sign, no NaN metric.</div>")
    items = "".join(f"<li><a href='#{f['stage']}'>{html.escape(f['stage'])}</a> · <b>{html.escape(f['check'])}</b>: "
                    f"{html.escape(f['message'])}</li>" for f in flags)
    return f"<div class='flags'><b>Health checks ({len(flags)} flag(s))</b><ul>{items}</ul></div>"


def write_report(results, out: Path) -> Path:
    """Write ``out/index.html`` from a :class:`~toolkit_core.experiment.runner.Results`."""
    from .anchors import all_claims
    from .health import Flag, collapsed_models

    d = results.to_dict()
    cfg = d["config"]
    flags = d.get("health", [])
    collapsed = collapsed_models([Flag(**f) for f in flags])
    claims = [c.to_dict() for c in all_claims(d["stages"], cfg.get("methods", {}))]
    sections, glossary = [], {}
    for stage, res in d["stages"].items():
        resumed = " · resumed from a finished run" if stage in d["resumed"] and stage not in d.get("ran", []) else ""
        figs = "".join(_img(out, f) for f in res.get("figures", []))
        stage_flags = [f for f in flags if f["stage"] == stage or (f["check"] == "at chance"
                                                                   and stage in ("robustness", "metrics"))]
        flag_html = "".join(f"<p class='err'>⚠ {html.escape(f['message'])}</p>" for f in stage_flags)
        tables, gloss = _stage_tables(stage, res, collapsed if stage != "generative" else set())
        glossary.update(gloss)
        stage_claims = [c for c in claims if c["stage"] == stage]
        claims_html = (f"<h3>Published anchors and claims</h3>{_claims_table(stage_claims)}" if stage_claims else "")
        took = d["timings_s"].get(stage, 0)
        sections.append(
            f"<section id='{stage}'><h2>{html.escape(_title(stage, cfg))}</h2>"
            f"<p class='intro'>{_intro(stage, res, cfg, d)}</p>"
            f"<p class='meta'>{html.escape(str(res.get('summary', '')))} · {took:.1f} s{resumed}</p>"
            f"{_definitions(stage, cfg)}{flag_html}{figs}{tables}{claims_html}</section>"
        )
    ran = list(d["stages"])
    methods = "; ".join(
        f"{sec}: {', '.join(m['label'] for m in cfg['methods'].get(sec, [])) or '-'}"
        for sec in dict.fromkeys(sec for s in ran for sec in STAGE_METHODS.get(s, ())))
    if "train" in ran:
        methods = "models: plain" + (", " if cfg["methods"].get("defenses") else "") + \
            ", ".join(m["label"] for m in cfg["methods"].get("defenses", [])) + "; " + \
            "; ".join(p for p in methods.split("; ") if not p.startswith("defenses"))
    full = set(ran) == set(STAGES)
    kind = ("quick" if cfg["quick"] else "full") + (" run" if full else f" partial run ({', '.join(ran)})")
    pulled = "".join(f" · {s} added because {', '.join(by)} need(s) it" for s, by in cfg.get("pulled_in", {}).items())
    n_claims = {v: sum(c["verdict"] == v for c in claims) for v in ("reproduced", "not reproduced", "not comparable")}
    claims_line = ("<p class='meta'>published anchors and claims: " +
                   ", ".join(f"{n} {v}" for v, n in n_claims.items()) + "</p>") if claims else ""
    gloss_html = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v or '(no definition given by the method)')}</dd>"
                         for k, v in sorted(glossary.items()))
    seeds = cfg.get("seeds", 1)
    precision = "" if cfg.get("precision", "fp32") == "fp32" else \
        f" · precision {cfg['precision']} (train, robustness, metrics; attribution in float32)"
    more = f" (+{seeds - 1} more for train, robustness, metrics)" if seeds > 1 else ""
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>torchtrust report</title><style>{_CSS}</style></head><body>
<h1>torchtrust report</h1>
<p class="meta">{html.escape(kind)} · seed {cfg['seed']}{more} · device {cfg['device']}{precision} ·
torch {d['versions']['torch']} · total {sum(d['timings_s'].values()):.0f} s{html.escape(pulled)}</p>
<p class="meta">model <b>{html.escape(str(cfg.get('workload', {}).get('model', '')))}</b> ·
data <b>{html.escape(str(cfg.get('workload', {}).get('data', '')))}</b></p>
<p class="meta">methods — {html.escape(methods)}</p>
{claims_line}
{_health_box(flags)}
<nav>{' '.join(f"<a href='#{s}'>{s}</a>" for s in ran)} <a href='#glossary'>glossary</a></nav>
{''.join(sections)}
<section id="glossary"><h2>Glossary</h2><dl class="glossary">{gloss_html}</dl></section>
<p class="meta">All numbers are in results.json next to this file.</p>
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
  var vw = document.documentElement.clientWidth, wide = [];
  Array.prototype.forEach.call(document.body.querySelectorAll("*"), function (el) {{
    if (el.closest(".scroll") && !el.classList.contains("scroll")) return;  // scrolls inside its box
    var r = el.getBoundingClientRect();
    if (r.right > vw + 1) wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : ""));
  }});
  document.body.setAttribute("data-viewport", vw);
  document.body.setAttribute("data-too-wide", wide.length ? wide.slice(0, 5).join(",") : "none");
}});
</script>
</body></html>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
