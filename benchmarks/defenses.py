"""Defenses: (a) speed of an AALP epoch relative to a PGD-AT epoch; (b) robust accuracy on digits.

(a) Speed. One training epoch of each defense with the *same* attack (L-inf PGD-10), timed in the same
process, interleaved round-robin with rotating order (the machine is shared and noisy), median over
``--repeats`` rounds, printed as ratios to the PGD-AT epoch. The primary figure is the process's CPU time
(``time.process_time``; torch runs single-threaded here), because on a shared machine the wall clock also
counts the time spent waiting for a core; wall-clock ratios are printed next to it. Target for
``aalp / pgd_at``: <= 1.1. Also printed: ALP, TRADES and plain cross-entropy epochs, and the cost of the AALP
objective (Guided Dropout + adaptive weights) relative to the plain pairing objective on one batch.

(b) Results. For no defense, pgd_at, trades, alp and aalp (``--defenses`` adds ``aalp_label``, the first,
label-leaking reading; ``--tune`` first chooses AALP's drop-rate schedule / weight temperature on a
validation split of the training set): train a small DigitsCNN on the 16x16 digits with
:func:`toolkit_core.fit`, then :func:`toolkit_core.evaluate_robustness` on the test split with
PGD-20 (2 restarts) and APGD-CE (100 iterations) at the training radius; a point is robust only if it
survives both (worst case). ``--seeds`` seeds, mean and standard deviation; written to
``docs/results/defenses.md`` with the per-seed numbers, plus figures in ``docs/figures/defenses_*.png``.

    python benchmarks/defenses.py --tune          # speed + tuning + results (3 seeds), ~15 min on 2 busy cores
    python benchmarks/defenses.py --quick         # 1 seed, 8x8 digits, 5 epochs: ~1 min, prints only
    python benchmarks/defenses.py --speed-only    # just (a)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFENSES = ("none", "pgd_at", "trades", "alp", "aalp")
#: ``aalp_label``: the first reading (rank by the true label, signed contribution), which leaks the label;
#: not in the default run, available with ``--defenses`` to reproduce the collapse.
LABELS = {
    "none": "no defense", "pgd_at": "PGD-AT", "trades": "TRADES (beta=6)", "alp": "ALP (lambda=0.5)",
    "aalp": "AALP (ours, docs/specs.md reading: predicted-class ranking)",
    "aalp_label": "AALP, first reading: true-label ranking (leaks the label)",
}


#: AALP parameters used in (b): the abstract's knobs (drop-rate schedule, weight temperature) as chosen by
#: ``--tune`` on a validation split of the training set; set by :func:`tune` when it runs.
AALP_PARAMS: dict = {}
#: candidates ``--tune`` compares (one seed each, PGD-20 worst case on the validation split)
TUNE_GRID = ({"p_max": 0.1}, {"p_max": 0.3}, {"p_max": 0.5}, {"p_max": 0.3, "temperature": 2.0})


#: ``--autoattack``: AutoAttack's members on a CPU budget (``--aa-budget reduced``, the default): APGD-CE and
#: APGD-T (9 target classes) at the reference schedule, FAB-T with 3 target classes instead of 9 and Square with
#: 1,000 queries instead of 5,000. ``--aa-budget standard`` runs the reference schedule (about 4x slower here).
AA_REDUCED = (("apgd", {"loss": "ce", "steps": 100, "restarts": 1}),
              ("apgd_t", {"steps": 100, "n_target_classes": 9, "restarts": 1}),
              ("fab", {"targeted": True, "steps": 100, "n_target_classes": 3, "restarts": 1}),
              ("square", {"n_queries": 1000, "p_init": 0.8}))
#: set by ``--aa-budget``
AA_BUDGET = {"budget": "reduced"}


def make_defense(name: str, attack):
    import toolkit_core as tt

    if name == "none":
        return None
    if name == "aalp":
        return tt.create("aalp", attack=attack, **AALP_PARAMS)
    if name == "aalp_label":
        return tt.create("aalp", attack=attack, rank_by="label", contribution="signed", weight_source="adv")
    return tt.create(name, attack=attack)


# --------------------------------------------------------------------------- (a) speed


def speed(repeats: int = 5, size: int = 16, n_train: int = 512, steps: int = 10, width: int = 16,
          hidden: int = 64) -> dict[str, float]:
    """Median epoch time of each defense with the same PGD-``steps`` attack, and ratios to PGD-AT."""
    import toolkit_core as tt
    from toolkit_core.data import load_digits
    from toolkit_core.models import DigitsCNN

    x, y = load_digits(size, "train").tensors
    data = (x[:n_train], y[:n_train])
    attack = tt.create("pgd", eps=0.1, alpha=0.025, steps=steps)
    names = ("pgd_at", "aalp", "alp", "trades", "none")
    times: dict[str, list[float]] = {n: [] for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    torch.manual_seed(0)
    init = DigitsCNN(size=size, width=width, hidden=hidden).state_dict()
    for r in range(repeats + 1):  # round 0 warms up (imports, allocator) and is discarded
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate: no position bias
            model = DigitsCNN(size=size, width=width, hidden=hidden)
            model.load_state_dict(init)
            defense = make_defense(name, attack)
            t0, c0 = time.perf_counter(), time.process_time()
            tt.fit(model, data, defense, epochs=1, batch_size=64, progress=False, seed=r)
            if r:
                times[name].append(time.process_time() - c0)
                walls[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(v) for n, v in times.items()}
    wall = {n: statistics.median(v) for n, v in walls.items()}
    out = {f"{n}_epoch_s": med[n] for n in names}
    out.update({f"{n}/pgd_at": med[n] / med["pgd_at"] for n in names if n != "pgd_at"})
    out.update({f"wall {n}/pgd_at": wall[n] / wall["pgd_at"] for n in names if n != "pgd_at"})
    # cost of AALP's extras on one batch (Guided Dropout + adaptive weights vs plain pairing)
    model = DigitsCNN(size=size, width=width, hidden=hidden).train()
    xb, yb = data[0][:64], data[1][:64]
    xa = (xb + 0.05 * torch.randn_like(xb)).clamp(0, 1)
    full, bare = tt.create("aalp", attack=attack), tt.create("aalp", attack=attack, adaptive=False,
                                                            guided_dropout=False)
    per = {}
    for label, d in (("aalp_objective", full), ("alp_objective", bare)):
        ts = []
        for _ in range(5 * repeats):
            t0 = time.process_time()
            loss, _ = d.objective(model, xb, xa, yb)
            loss.backward()
            ts.append(time.process_time() - t0)
        per[label] = statistics.median(ts)
    out["aalp_extras/objective"] = per["aalp_objective"] / per["alp_objective"]
    out["config"] = {"size": size, "n_train": n_train, "batch": 64, "attack": f"PGD-{steps} linf eps 0.1",
                     "model": f"DigitsCNN(width={width}, hidden={hidden})", "repeats": repeats,
                     "threads": torch.get_num_threads()}
    return out


# --------------------------------------------------------------------------- (b) results


def train_and_evaluate(name: str, seed: int, *, size: int = 16, epochs: int = 8, eps: float = 0.1,
                       train_steps: int = 5, n_train: int | None = None, lr: float = 3e-3, width: int = 8,
                       hidden: int = 32, apgd_steps: int = 100, validation: bool = False,
                       autoattack: bool = False) -> dict:
    """Train one defense on the digits and evaluate it with PGD-20 and APGD-CE. Returns a dict of numbers.

    ``validation=True``: train on 80% of the training split and evaluate on the other 20% (never the test
    split): what :func:`tune` uses. ``autoattack=True``: evaluate with PGD-20 and standard AutoAttack
    (APGD-CE, APGD-T, FAB-T, Square 5000 queries, the ``autoattack`` plugin) instead; APGD-CE is then read off
    AutoAttack's first member (``apgd_steps`` is ignored: the reference schedule's 100 iterations)."""
    import toolkit_core as tt
    from toolkit_core.data import load_digits
    from toolkit_core.models import DigitsCNN

    x, y = load_digits(size, "train").tensors
    if validation:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(12345))
        cut = int(0.8 * len(x))
        test = (x[perm[cut:]], y[perm[cut:]])
        x, y = x[perm[:cut]], y[perm[:cut]]
    else:
        test = load_digits(size, "test").tensors
    if n_train is not None:
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(x), generator=g)[:n_train]
        x, y = x[keep], y[keep]
    torch.manual_seed(seed)
    model = DigitsCNN(size=size, width=width, hidden=hidden)
    attack = tt.create("pgd", eps=eps, alpha=2.5 * eps / train_steps, steps=train_steps)
    t0 = time.perf_counter()
    hist = tt.fit(model, (x, y), make_defense(name, attack), epochs=epochs, batch_size=64, lr=lr, seed=seed,
                  progress=False)
    train_s = time.perf_counter() - t0
    model.eval()
    attacks = {"pgd20": tt.create("pgd", eps=eps, alpha=eps / 4, steps=20, restarts=2, seed=seed)}
    if autoattack:
        members = None if AA_BUDGET["budget"] == "standard" else [list(a) for a in AA_REDUCED]
        attacks["autoattack"] = tt.create("autoattack", eps=eps, version="standard", attacks=members, seed=seed)
    else:
        attacks["apgd_ce"] = tt.create("apgd", eps=eps, steps=apgd_steps, loss="ce", seed=seed)
    t1 = time.perf_counter()
    res = tt.evaluate_robustness(model, test, attacks=attacks)
    eval_s = time.perf_counter() - t1
    extra: dict = {}
    if autoattack:
        alive = res.clean.clone()
        for label, broken in res.components["autoattack"].items():  # cumulative, in AutoAttack's order
            alive &= ~broken
            extra[f"aa_after_{label}"] = float(alive.float().mean())
        extra["autoattack"] = res.accuracy["autoattack"]
        extra["aa_budget"] = AA_BUDGET["budget"]
        apgd_ce = next(iter(v for k, v in extra.items() if k.startswith("aa_after_")))
    else:
        apgd_ce = res.accuracy["apgd_ce"]
    return {
        "defense": name, "seed": seed, "clean": res.clean_accuracy, "pgd20": res.accuracy["pgd20"],
        "apgd_ce": apgd_ce, "worst": res.worst_case_accuracy, "train_s": train_s, "eval_s": eval_s,
        "aalp_params": dict(AALP_PARAMS) if name == "aalp" else None, **extra,
        "history": {k: hist[k] for k in ("loss", "clean_acc")} | ({"adv_acc": hist["adv_acc"]}
                                                                  if "adv_acc" in hist.last else {}),
    }


def _read_jsonl(path: str | None) -> list[dict]:
    if not path or not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _append_jsonl(path: str | None, row: dict) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def tune(grid=TUNE_GRID, seed: int = 100, tune_file: str | None = None, max_new: int | None = None,
         **kw) -> list[dict] | None:
    """Choose AALP's drop-rate schedule / weight temperature on a validation split (20% of the training split;
    the test split is never used), by the worst case of PGD-20 and APGD-CE; sets :data:`AALP_PARAMS`.

    ``tune_file``: JSON lines of finished candidates; those already in it are not retrained (resume).
    ``max_new``: train at most this many candidates in this call; returns ``None`` if some are left."""
    import toolkit_core as tt

    done = {json.dumps(r["params"], sort_keys=True): r for r in _read_jsonl(tune_file)}
    rows = []
    for params in grid:
        key = json.dumps(dict(params), sort_keys=True)
        if key in done:
            row = done[key]
        elif max_new is not None and max_new <= 0:
            return None
        else:
            max_new = None if max_new is None else max_new - 1
            AALP_PARAMS.clear()
            AALP_PARAMS.update(params)
            row = train_and_evaluate("aalp", seed, validation=True, **kw)
            row["params"] = dict(params)
            _append_jsonl(tune_file, row)
        rows.append(row)
        print(f"  tune {params}: val clean {row['clean']:.3f} worst {row['worst']:.3f}", flush=True)
    best = max(rows, key=lambda r: (r["worst"], r["clean"]))
    AALP_PARAMS.clear()
    AALP_PARAMS.update(best["params"])
    print(f"  chosen AALP parameters: {AALP_PARAMS} ({tt.create('aalp', **AALP_PARAMS)!r})", flush=True)
    return rows


def results(seeds: int = 3, defenses=DEFENSES, runs_file: str | None = None, seed_start: int = 0,
            aggregate_only: bool = False, **kw) -> list[dict]:
    """Every defense on seeds ``seed_start .. seeds - 1``. ``runs_file``: JSON lines of finished runs, skipped
    here (resume; several processes on disjoint seeds or defenses); an AALP run counts only if it was trained
    with the current :data:`AALP_PARAMS`. Returns the rows of seeds ``0 .. seeds - 1`` (from the file too)."""
    done: dict[tuple, dict] = {}
    for r in _read_jsonl(runs_file):
        if r["defense"] != "aalp" or (r.get("aalp_params") or {}) == AALP_PARAMS:
            done[(r["defense"], r["seed"])] = r
    for seed in range(seed_start, seeds):
        for name in defenses:
            if aggregate_only or (name, seed) in done:
                continue
            row = train_and_evaluate(name, seed, **kw)
            print(f"  seed {seed} {name:9s} clean {row['clean']:.3f} pgd20 {row['pgd20']:.3f} "
                  f"apgd {row['apgd_ce']:.3f} worst {row['worst']:.3f} (train {row['train_s']:.1f}s, "
                  f"eval {row['eval_s']:.1f}s)", flush=True)
            done[(name, seed)] = row
            _append_jsonl(runs_file, row)
    return [done[(name, seed)] for seed in range(seeds) for name in defenses if (name, seed) in done]


def summarize(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for name in dict.fromkeys(r["defense"] for r in rows):
        sel = [r for r in rows if r["defense"] == name]
        out[name] = {}
        for k in ("clean", "pgd20", "apgd_ce", "autoattack", "worst", "train_s"):
            if not all(k in r for r in sel):
                continue
            vals = [r[k] for r in sel]
            out[name][k] = (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
    return out


def write_markdown(rows, summary, spd, config, command, path: Path, tuning=None) -> None:
    n_seeds = len({r["seed"] for r in rows})
    aa = all("autoattack" in v for v in summary.values())
    reduced = sum(r.get("aa_budget") == "reduced" for r in rows)
    title = "PGD-20 and AutoAttack" if aa else "PGD-20 and APGD-CE"
    evaluation = (
        "PGD-20 (step eps/4, 2 restarts) and AutoAttack (Croce & Hein 2020, arXiv:2003.01690: "
        + ("APGD-CE, APGD-T with 9 target classes, FAB-T with 9 target classes, 100 iterations each, and Square with "
           "5000 queries (the reference schedule)" if reduced == 0 else
           "APGD-CE and APGD-T with 9 target classes, 100 iterations each, as in the reference schedule; **reduced "
           "budget** to fit the CPU: FAB-T with 3 target classes instead of 9 and Square with 1,000 queries instead of "
           "5,000")
        + ", each on the points every earlier member left correct; the `autoattack` plugin), both at "
        "the training radius; the APGD-CE column is AutoAttack's first member alone; *worst case* counts a point "
        "as robust only if it survives PGD-20 and every AutoAttack member."
        if aa else
        "PGD-20 (step eps/4, 2 restarts) and APGD-CE (Croce & Hein "
        f"2020, {config['apgd_steps']} iterations), both at the training radius; *worst case* counts a "
        "point as robust only if it survives both attacks.")
    lines = [
        f"# Defenses on digits: clean, {title} accuracy",
        "",
        f"Generated by `{command}` (CPU only: no GPU was available in this session; a shared, noisy 2-core "
        f"machine). Numbers are test-split accuracies of the {config['size']}x{config['size']} scikit-learn digits "
        "(450 images), "
        f"mean +- standard deviation over {n_seeds} seed(s) (model init, data order and attack noise).",
        "",
        "Setup: " + ", ".join(f"{k} = {v}" for k, v in config.items()) + ". Training attack: L-inf PGD "
        f"with `steps = {config['train_steps']}` and step `2.5 eps / steps`, random start. Evaluation with "
        "`toolkit_core.evaluate_robustness`: " + evaluation,
        "",
    ]
    keys = ("clean", "pgd20", "apgd_ce") + (("autoattack",) if aa else ()) + ("worst",)
    heads = {"clean": "clean", "pgd20": "PGD-20", "apgd_ce": "APGD-CE", "autoattack": "AutoAttack",
             "worst": "worst case"}
    lines += ["| defense | " + " | ".join(heads[k] for k in keys) + " | train time (s, wall clock, busy machine) |",
              "|---" * (len(keys) + 2) + "|"]
    for name, s in summary.items():
        cells = [f"{s[k][0]:.3f} +- {s[k][1]:.3f}" for k in keys]
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + f" | {s['train_s'][0]:.1f} |")
    lines += ["", "## What the numbers say", ""]
    lines += _commentary(summary, rows)
    if tuning:
        lines += ["", "## AALP tuning (validation split, never the test set)", "",
                  "Only the drop-rate schedule (`p_max`, `ramp_epochs`) and the adaptive weights' temperature "
                  "are tuned. One seed each, trained on 80% of the training split, evaluated on "
                  "the other 20% with PGD-20 and APGD-CE (not AutoAttack, to fit the CPU budget); the best "
                  "worst-case accuracy of the two is used above.", "",
                  "| parameters | val clean | val worst case |", "|---|---|---|"]
        for r in tuning:
            lines.append(f"| `{r['params']}` | {r['clean']:.3f} | {r['worst']:.3f} |")
    if spd:
        lines += speed_section(spd)
    members = [k[len("aa_after_"):] for k in rows[0] if k.startswith("aa_after_")] if aa else []
    lines += ["", "## Per-seed numbers", ""]
    if members:
        lines += ["AutoAttack columns: accuracy after each member, cumulative (each runs on the points still "
                  "correct), so the last is AutoAttack's robust accuracy.", ""]
    lines += ["| defense | seed | clean | PGD-20 | " + " | ".join(f"AA after {m}" for m in members or ["APGD-CE"])
              + " | worst |", "|---" * (5 + max(len(members), 1)) + "|"]
    for r in rows:
        vals = [r[f"aa_after_{m}"] for m in members] if members else [r["apgd_ce"]]
        lines.append(f"| {r['defense']} | {r['seed']} | {r['clean']:.3f} | {r['pgd20']:.3f} | "
                     + " | ".join(f"{v:.3f}" for v in vals) + f" | {r['worst']:.3f} |")
    lines += ["", "Figures: `docs/figures/defenses_results.png` (this table), `docs/figures/defenses_training.png` "
                  "(training curves, seed 0).", ""]
    marker = "## Notes (written by hand"
    if path.exists() and marker in path.read_text():  # keep the hand-written notes at the end
        text = path.read_text()
        lines += [text[text.index(marker):].rstrip("\n"), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def speed_section(spd: dict) -> list[str]:
    lines = ["", "## Speed (one epoch, same attack)", "",
             f"Config: {json.dumps(spd['config'])}. Median CPU time of one epoch (single-threaded process); "
             "ratios to the PGD-AT epoch measured in the same run; wall-clock ratios for comparison.", "",
             "| defense | epoch CPU (s) | ratio to PGD-AT (CPU) | ratio (wall clock) |", "|---|---|---|---|"]
    for n in ("pgd_at", "aalp", "alp", "trades", "none"):
        ratio = 1.0 if n == "pgd_at" else spd[f"{n}/pgd_at"]
        wr = 1.0 if n == "pgd_at" else spd[f"wall {n}/pgd_at"]
        lines.append(f"| {n} | {spd[f'{n}_epoch_s']:.3f} | {ratio:.3f} | {wr:.3f} |")
    lines += ["", "AALP objective (Guided Dropout + adaptive weights) / plain pairing objective on one batch: "
                  f"{spd['aalp_extras/objective']:.3f}. Target `aalp / pgd_at <= 1.1`: "
                  f"{'met' if spd['aalp/pgd_at'] <= 1.1 else 'NOT met'}."]
    return lines


def _commentary(s, rows=None) -> list[str]:
    out = []
    if "none" in s and "pgd_at" in s:
        out.append(f"- Adversarial training matters: PGD-AT keeps {s['pgd_at']['worst'][0]:.3f} of the points under "
                   f"the worst case of every attack, the undefended model {s['none']['worst'][0]:.3f}.")
    if "alp" in s and "aalp" in s:
        a, b = s["alp"], s["aalp"]
        diff = b["worst"][0] - a["worst"][0]
        noise = a["worst"][1] + b["worst"][1]
        verdict = ("**AALP beats ALP** here" if diff > noise else "**AALP is worse than ALP** here" if diff < -noise
                   else "**AALP does not beat ALP** here: the difference is within one standard deviation of each")
        out.append(f"- {verdict} (worst case {b['worst'][0]:.3f} +- {b['worst'][1]:.3f} vs "
                   f"{a['worst'][0]:.3f} +- {a['worst'][1]:.3f}, difference {diff:+.3f}; clean {b['clean'][0]:.3f} vs "
                   f"{a['clean'][0]:.3f}). AALP here is our reading (docs/specs.md: Guided Dropout ranked by the "
                   "predicted class, weights from an eval-mode pass), not the paper's code.")
        pa = {r["seed"]: r["worst"] for r in rows or [] if r["defense"] == "aalp"}
        pb = {r["seed"]: r["worst"] for r in rows or [] if r["defense"] == "alp"}
        d = [pa[k] - pb[k] for k in sorted(pa) if k in pb]
        if len(d) > 1:
            out.append(f"- Paired by seed (same init seed, data order and attack noise), AALP - ALP worst case: "
                       f"{', '.join(f'{v:+.3f}' for v in d)}; mean {statistics.mean(d):+.3f} +- "
                       f"{statistics.stdev(d):.3f}; AALP higher on {sum(v > 0 for v in d)} of {len(d)} seeds.")
    if "aalp_label" in s:
        c = s["aalp_label"]
        out.append(f"- The first reading (true-label ranking) collapses: clean {c['clean'][0]:.3f}, worst "
                   f"{c['worst'][0]:.3f} -- the label leaks into the training logits through the mask.")
    if all(k in s for k in ("pgd_at", "trades")):
        out.append(f"- TRADES: clean {s['trades']['clean'][0]:.3f}, worst {s['trades']['worst'][0]:.3f}; "
                   f"PGD-AT: clean {s['pgd_at']['clean'][0]:.3f}, worst {s['pgd_at']['worst'][0]:.3f}.")
    if all("autoattack" in v for v in s.values()):
        gaps = {n: v["apgd_ce"][0] - v["autoattack"][0] for n, v in s.items()}
        out.append("- AutoAttack's later members (APGD-T, FAB-T, Square) lower the accuracy below APGD-CE alone by "
                   + ", ".join(f"{n} {g:.3f}" for n, g in gaps.items()) + ".")
    apgd_weaker = [n for n, v in s.items() if v["apgd_ce"][0] > v["pgd20"][0] + 0.02]
    out.append("- APGD-CE is at least as strong as PGD-20 for every defense." if not apgd_weaker else
               f"- APGD-CE is weaker than PGD-20 (2 restarts) by more than 0.02 for: {', '.join(apgd_weaker)}.")
    out.append("- Small model, small data, few epochs: absolute numbers are far from the papers' CIFAR/MNIST "
               "settings; the comparison between rows is what this table is for.")
    return out


def figures(rows, summary, size: int = 16) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir = ROOT / "docs" / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = list(summary)
    keys = [("clean", "clean"), ("pgd20", "PGD-20"), ("apgd_ce", "APGD-CE"), ("worst", "worst case")]
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=90)
    width = 0.8 / len(keys)
    for i, (k, label) in enumerate(keys):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [summary[n][k][0] for n in names], width, yerr=[summary[n][k][1] for n in names], label=label,
               capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(ncols=4, fontsize=8, loc="upper right")
    ax.set_title(f"digits {size}x{size}, L-inf eps 0.1 (mean +- std over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(fig_dir / "defenses_results.png")
    plt.close(fig)

    training_figure(rows)


def training_figure(rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(DEFENSES, ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=90)
    for r in rows:
        if r["seed"] != 0:
            continue
        c = colors.get(r["defense"])
        axes[0].plot(r["history"]["loss"], label=r["defense"], color=c)
        if "adv_acc" in r["history"]:
            axes[1].plot(r["history"]["adv_acc"], label=r["defense"], color=c)
    axes[0].set(xlabel="epoch", ylabel="training loss (each defense's own)")
    axes[1].set(xlabel="epoch", ylabel="train-batch adversarial acc.")
    axes[0].legend(fontsize=7)
    axes[1].set_title("train mode (AALP: with Guided Dropout)", fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "figures" / "defenses_training.png")
    plt.close(fig)


def aalp_figure() -> None:
    """Guided Dropout on one digit (contributions, dropped features), the p ramp, and adaptive weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchtrust_aalp import adaptive_weights, guided_dropout, predicted_class

    import toolkit_core as tt
    from toolkit_core.data import load_digits
    from toolkit_core.robustness import digits_model

    model = digits_model(size=16)
    x, y = load_digits(16, "test").tensors
    x, y = x[:64], y[:64]
    with torch.no_grad():
        h = model.relu(model.fc(model.flatten(model.features(x))))
        yhat = predicted_class(h, model.head)
        c = (h * model.head.weight[yhat]).abs().numpy()
        _, mask = guided_dropout(h, model.head.weight, yhat, 0.3)
    x_adv = tt.create("pgd", eps=0.1, alpha=0.025, steps=10, seed=0)(model, x, y)
    with torch.no_grad():
        z_adv = model(x_adv)
    w = adaptive_weights(z_adv, y, 0.5)
    q = torch.softmax(z_adv, 1)[torch.arange(64), y]
    aalp = tt.create("aalp", p_max=0.3)
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.9), dpi=90)
    order = c[0].argsort()
    colors = ["tab:red" if mask[0, j] == 0 else "tab:blue" for j in order]
    axes[0].bar(range(len(order)), c[0][order], color=colors)
    axes[0].set(title="Guided Dropout, p=0.3 (red: dropped)", xlabel="feature (sorted by |h_j W[yhat,j]|)",
                ylabel="|contribution| to yhat")
    axes[1].step(range(10), [aalp.rate(e, 10) for e in range(10)], where="post")
    axes[1].set(title="drop rate ramp (10 epochs)", xlabel="epoch", ylabel="p")
    axes[2].scatter(q.numpy(), w.numpy(), s=8)
    axes[2].axhline(0.5, color="gray", lw=0.8, ls="--")
    axes[2].set(title="pairing weights (mean 0.5)", xlabel="p(y | x_adv)", ylabel="lambda_i")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "figures" / "defenses_aalp.png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 8x8 digits, 5 epochs, lr 1e-2, APGD-50")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--results-only", action="store_true")
    parser.add_argument("--training-figure", action="store_true",
                        help="only retrain seed 0 of every defense and redraw docs/figures/defenses_training.png")
    parser.add_argument("--update-speed", action="store_true",
                        help="with --speed-only: replace the speed section of an existing --out file")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--tune", action="store_true",
                        help="first choose AALP's p_max / ramp / temperature on a validation split (TUNE_GRID)")
    parser.add_argument("--defenses", default=",".join(DEFENSES),
                        help=f"comma-separated rows (default {','.join(DEFENSES)}; also aalp_label)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for tiny models)")
    parser.add_argument("--autoattack", action="store_true",
                        help="evaluate with PGD-20 and standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square)")
    parser.add_argument("--aa-budget", choices=["reduced", "standard"], default="reduced",
                        help="--autoattack: reference schedule, or FAB-T 3 targets, Square 1000 queries")
    parser.add_argument("--runs-file", default=None, help="(b): JSON lines of finished runs (resume / parallel)")
    parser.add_argument("--tune-file", default=None, help="--tune: JSON lines of finished candidates (resume)")
    parser.add_argument("--tune-max", type=int, default=None, help="--tune: train at most this many candidates")
    parser.add_argument("--seed-start", type=int, default=0, help="(b): first seed this process trains")
    parser.add_argument("--aggregate-only", action="store_true", help="(b): train nothing, aggregate --runs-file")
    parser.add_argument("--no-report", action="store_true", help="(b): train and append to --runs-file only")
    parser.add_argument("--out", default=None,
                        help="markdown to write (default docs/results/defenses.md; --quick: nothing unless given)")
    args = parser.parse_args()
    if args.out is None and (not args.quick or args.update_speed):
        args.out = str(ROOT / "docs" / "results" / "defenses.md")
    torch.set_num_threads(args.threads)
    AA_BUDGET["budget"] = args.aa_budget
    command = "python benchmarks/defenses.py" + (" --quick" if args.quick else "")
    spd = None
    if args.training_figure:
        training_figure(results(1, size=16, epochs=args.epochs or 8, eps=0.1, train_steps=5, lr=3e-3, apgd_steps=10))
        return
    tuning = None
    if args.tune and not args.speed_only:
        q = args.quick
        tuning = tune(size=8 if q else 16, epochs=args.epochs or (5 if q else 8), eps=0.1, train_steps=5,
                      lr=1e-2 if q else 3e-3, apgd_steps=50 if q else 100, tune_file=args.tune_file,
                      max_new=args.tune_max)
        if tuning is None:
            print("tuning not finished (--tune-max): rerun to continue")
            return
    if not args.results_only and not args.speed_only and (args.no_report or args.aggregate_only):
        args.results_only = True  # chunks of a resumable run measure no speed
    if not args.results_only:
        spd = speed(repeats=2 if args.quick else args.repeats, n_train=256 if args.quick else 512)
        print("(a) speed, one epoch with the same PGD-10 attack (median; ratios to PGD-AT in the same run):")
        for k, v in spd.items():
            print(f"  {k:24s} {v if isinstance(v, dict) else f'{v:.4f}'}")
        print(f"  target aalp/pgd_at <= 1.1: {'met' if spd['aalp/pgd_at'] <= 1.1 else 'NOT met'}")
    if args.speed_only:
        if args.update_speed:
            path = Path(args.out)
            text = path.read_text()
            a, b = text.index("\n## Speed"), text.index("\n## Per-seed numbers")
            path.write_text(text[:a] + "\n".join(speed_section(spd)[1:]) + "\n" + text[b:])
            print(f"updated the speed section of {path}")
        return
    q = args.quick
    config = {"size": 8 if q else 16, "epochs": args.epochs or (5 if q else 8), "eps": 0.1, "train_steps": 5,
              "lr": 1e-2 if q else 3e-3, "optimizer": "adam", "batch": 64, "model": "DigitsCNN(width=8, hidden=32)",
              "n_train": "all (1347)", "apgd_steps": 50 if q else 100}
    seeds = args.seeds if args.seeds is not None else (1 if q else 3)
    print(f"(b) results: {seeds} seed(s), {config}")
    t0 = time.perf_counter()
    config["aalp_params"] = dict(AALP_PARAMS) or "defaults"
    rows = results(seeds, defenses=tuple(args.defenses.split(",")), size=config["size"], epochs=config["epochs"],
                   eps=0.1, train_steps=5, lr=config["lr"], apgd_steps=config["apgd_steps"],
                   autoattack=args.autoattack, runs_file=args.runs_file, seed_start=args.seed_start,
                   aggregate_only=args.aggregate_only)
    if args.no_report or not rows:
        return
    summary = summarize(rows)
    for name, s in summary.items():
        print(f"  {name:9s} " + "  ".join(f"{k} {m:.3f}+-{sd:.3f}" for k, (m, sd) in s.items()))
    print(f"  total {time.perf_counter() - t0:.0f}s")
    if args.out is None:
        return
    command += (" --tune" if args.tune else "") + (" --autoattack" if args.autoattack else "")
    if args.runs_file:
        rf = Path(args.runs_file)
        command += f" --runs-file {rf.relative_to(ROOT) if rf.is_absolute() else rf}"
    write_markdown(rows, summary, spd, config, command, Path(args.out), tuning)
    Path(args.out).with_suffix(".json").write_text(json.dumps({  # machine-readable twin of the markdown
        "command": command, "config": config, "aalp_params": dict(AALP_PARAMS),
        "summary": {n: {k: {"mean": m, "std": sd} for k, (m, sd) in v.items()} for n, v in summary.items()},
        "rows": [{k: v for k, v in r.items() if k != "history"} for r in rows],
        "tuning": [{k: v for k, v in r.items() if k != "history"} for r in tuning or []],
    }, indent=1))
    figures(rows, summary, config["size"])
    aalp_figure()
    print(f"wrote {args.out} and docs/figures/defenses_*.png")


if __name__ == "__main__":
    main()
