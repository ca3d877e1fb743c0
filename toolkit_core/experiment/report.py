"""A self-contained HTML report: every number from results.json, every figure embedded as base64."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem} td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:right} th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0} .meta{color:#666;font-size:.85rem}
.err{color:#a00} code{background:#f5f5f5;padding:0 .2rem}
"""

_TITLES = {
    "train": "Training: plain and defended models",
    "robustness": "Robustness: clean, per-attack and worst-case accuracy",
    "attribution": "Attribution: heatmaps, parameter randomization, alignment, sufficiency",
    "generative": "Generative priors: GAN vs MMCGAN on the PacGAN mixtures",
    "metrics": "Generalization metrics",
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.4g}"
    if v is None:
        return "n/a"
    return html.escape(str(v))


def _table(rows: dict[str, dict[str, Any]], first: str = "") -> str:
    if not rows:
        return "<p>(nothing)</p>"
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols and not isinstance(r[c], (dict, list))]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [first, *cols])
    body = "".join(
        "<tr>" + f"<td>{html.escape(str(k))}</td>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>"
        for k, r in rows.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(out: Path, name: str) -> str:
    path = out / name
    if not path.exists():
        return f'<p class="err">missing figure {html.escape(name)}</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def _stage_tables(stage: str, res: dict[str, Any]) -> str:
    parts = []
    if stage == "train":
        parts.append(_table({k: {c: v[c] for c in ("defense", "epochs", "train_acc", "test_acc", "time_s") if c in v}
                             for k, v in res.get("models", {}).items()}, "model"))
    elif stage == "robustness":
        from .figures import robust_columns

        parts.append(_table({m: robust_columns(v) for m, v in res.get("table", {}).items()}, "model"))
        for model, msgs in res.get("warnings", {}).items():
            parts.extend(f'<p class="err">{html.escape(model)}: {html.escape(m)}</p>' for m in msgs)
        cert = res.get("certification", {})
        if cert:
            parts.append("<h3>certified accuracy at L2 radius r</h3>")
            parts.append(_table({f"{m} / {c}": {f"r={r}": a for r, a in d["curve"].items()}
                                 for m, per in cert.items() for c, d in per.items()}, "model / certifier"))
    elif stage == "metrics":
        for name, per_model in res.get("table", {}).items():
            parts.append(f"<h3>{html.escape(name)}</h3>")
            hib = res.get("higher_is_better", {}).get(name, {})
            rows = {m: {(f"{k} ↑" if hib.get(k) else f"{k} ↓" if k in hib else k): v for k, v in vals.items()}
                    for m, vals in per_model.items()}
            parts.append(_table(rows, "model"))
    else:
        for key, val in res.items():
            if key in ("figures", "summary", "errors"):
                continue
            if isinstance(val, dict) and val and all(isinstance(v, dict) for v in val.values()):
                parts.append(f"<h3>{html.escape(key)}</h3>" + _table(val, ""))
    for where, msg in res.get("errors", {}).items():
        parts.append(f'<p class="err">{html.escape(where)}: {html.escape(msg)}</p>')
    return "\n".join(parts)


def write_report(results, out: Path) -> Path:
    """Write ``out/index.html`` from a :class:`~toolkit_core.experiment.runner.Results`."""
    d = results.to_dict()
    cfg = d["config"]
    sections = []
    for stage, res in d["stages"].items():
        resumed = " (resumed from a finished stage)" if stage in d["resumed"] else ""
        figs = "".join(_img(out, f) for f in res.get("figures", []))
        sections.append(
            f"<h2 id='{stage}'>{html.escape(_TITLES.get(stage, stage))}</h2>"
            f"<p class='meta'>{html.escape(str(res.get('summary', '')))} · {d['timings_s'].get(stage, 0):.1f} s"
            f"{resumed}</p>{figs}{_stage_tables(stage, res)}"
        )
    methods = "; ".join(f"{k}: {', '.join(m['label'] for m in v) or '-'}" for k, v in cfg["methods"].items())
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>torchtrust report</title><style>{_CSS}</style></head><body>
<h1>torchtrust report</h1>
<p class="meta">seed {cfg['seed']} · device {cfg['device']} · {'quick' if cfg['quick'] else 'full'} run ·
torch {d['versions']['torch']} · total {sum(d['timings_s'].values()):.0f} s</p>
<p class="meta">model <b>{html.escape(str(cfg.get('workload', {}).get('model', '')))}</b> ·
data <b>{html.escape(str(cfg.get('workload', {}).get('data', '')))}</b></p>
<p class="meta">methods — {html.escape(methods)}</p>
<nav>{' · '.join(f"<a href='#{s}'>{s}</a>" for s in d['stages'])}</nav>
{''.join(sections)}
<p class="meta">All numbers are in results.json next to this file.</p>
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
}});
</script>
</body></html>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
