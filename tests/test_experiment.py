"""The main job: the quick default experiment, resume, determinism, config errors, third-party plugins,
and the HTML report in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import toolkit_core
from registry.cli import cli
from toolkit_core.experiment import ConfigError, Experiment
from toolkit_core.experiment.config import STAGES
from toolkit_core.testing import with_plugin_on_path

FIGURE_TEXT: dict[str, dict[str, list[list[str]]]] = {}  # figure file -> legend / tick labels per axes


def _record_figure_text(savefig):
    """Wrap Figure.savefig: record each axes' legend entries and categorical tick labels, and whether a
    legend overlaps its axes' data area, from the very objects matplotlib draws."""

    def wrapped(fig, fname, *args, **kwargs):
        fig.canvas.draw()
        rec = FIGURE_TEXT.setdefault(Path(str(fname)).name, {"legends": [], "ticks": [], "legend_over_data": []})
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                rec["legends"].append([t.get_text() for t in legend.get_texts()])
                box, area = legend.get_window_extent(), ax.get_window_extent()
                rec["legend_over_data"].append(box.overlaps(area))
            for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
                texts = [t.get_text() for t in labels if t.get_text()]
                if texts and not all(t.replace(".", "").replace("−", "").replace("-", "").isdigit() for t in texts):
                    rec["ticks"].append(texts)
        return savefig(fig, fname, *args, **kwargs)

    return wrapped


#: The report tests run on a fresh ``--quick`` run; with ``--run-slow`` also on a fresh full default run
#: (the README's main job, through the CLI: 3 seeds, full budgets, about half an hour on 2 cores).
REPORT_MODES = ["quick", pytest.param("full", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=REPORT_MODES)
def quick_run(request, tmp_path_factory):
    from matplotlib.figure import Figure

    FIGURE_TEXT.clear()
    out = tmp_path_factory.mktemp(f"report-{request.param}")
    mp = pytest.MonkeyPatch()
    mp.setattr(Figure, "savefig", _record_figure_text(Figure.savefig))
    try:
        if request.param == "quick":
            results = Experiment.default(quick=True).run(out, progress=False)
        else:
            t0 = time.perf_counter()
            res = CliRunner().invoke(cli, ["run", "--out", str(out)])
            console = f"{res.output}\n[wall {time.perf_counter() - t0:.0f} s]\n"
            out.with_name(out.name + "-console.txt").write_text(console)  # beside the report, for the record
            assert res.exit_code == 0, res.output[-3000:]
            shutil.copytree(out, out.with_name(out.name + "-fresh"))  # the fresh report, before any test resumes it
            assert res.output.count(str((out / "index.html").resolve())) == 1  # the report path, once
            assert "resumed" not in res.output  # fresh: every stage computed
            results = Experiment.default().run(out, progress=False)  # the same results, resumed
    finally:
        mp.undo()
    return out, results


def test_quick_default_experiment_holds_every_stage_with_numbers(quick_run):
    out, results = quick_run
    data = json.loads((out / "results.json").read_text())
    assert set(data["stages"]) == set(STAGES)
    train = data["stages"]["train"]["models"]
    assert train["plain"]["test_acc"] > 0.8  # the plain digits CNN really learned
    for label, row in data["stages"]["robustness"]["table"].items():
        accs = [a["accuracy"] for a in row["attacks"].values()]
        assert 0 <= row["worst_case_accuracy"] <= min(accs) <= max(accs) <= row["clean_accuracy"] + 1e-9, label
    attribution = data["stages"]["attribution"]
    # labels carry quick-mode parameters, e.g. "integrated_gradients(steps=8)"
    assert set(toolkit_core.list_methods("attribution")) <= {m.split("(")[0] for m in attribution["methods"]}
    assert not attribution["errors"]
    ranked = attribution["faithfulness ranking"]  # every method ranked by the faithfulness metrics
    assert sorted(ranked) == sorted(attribution["methods"])
    ranks = attribution["faithfulness mean rank (1 = best)"]
    assert all(1 <= ranks[m] <= len(ranked) for m in ranked)
    assert [ranks[m] for m in ranked] == sorted(ranks[m] for m in ranked)
    metrics = data["stages"]["metrics"]["table"]
    skipped = data["stages"]["metrics"]["skipped"]
    name_of = {m["label"]: m["name"] for m in data["config"]["methods"]["metrics"]}  # full: feature_complexity(tol=0.1)
    skipped = {name_of.get(s, s) for s in skipped}
    assert {name_of[k] for k in metrics} == set(toolkit_core.list_methods("metric")) - skipped
    assert all(toolkit_core.get_info(n).cls.applies_to != "classifier" for n in skipped)
    generative = data["stages"]["generative"]
    assert generative["table"], "the generative stage produced no rows"
    for stage in data["stages"].values():
        for fig in stage.get("figures", []):
            assert (out / fig).stat().st_size > 1000, fig
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == sum(len(s.get("figures", [])) for s in data["stages"].values())


def test_no_figure_repeats_a_label_or_puts_its_legend_over_the_data(quick_run):
    assert {"training.png", "robustness.png", "alignment.png", "sufficiency.png", "metrics.png"} <= set(FIGURE_TEXT)
    for name, rec in FIGURE_TEXT.items():
        for labels in rec["legends"] + rec["ticks"]:
            assert len(labels) == len(set(labels)), f"{name}: repeated labels {labels}"
        assert not any(rec["legend_over_data"]), f"{name}: a legend overlaps its axes"
    alignment_ticks = FIGURE_TEXT["alignment.png"]["ticks"][0]
    assert {"lrp", "lrp(composite=epsilon_plus_flat)", "lrp(rule=lrp_zplus)"} <= set(alignment_ticks)


def test_report_explains_every_section_and_defines_every_metric_key(quick_run):
    import re

    out, results = quick_run
    page = (out / "index.html").read_text()
    for stage in STAGES:
        section = page.split(f"<section id='{stage}'>", 1)[1].split("</section>", 1)[0]
        intro = re.search(r"<p class='intro'>(.*?)</p>", section, re.S).group(1)
        assert 2 <= intro.count(". ") + 1 <= 6 and len(intro) > 150, (stage, intro)
    assert "eps 0.1 (pixels in [0, 1])" in page  # the threat model is stated
    glossary = page.split("<section id=\"glossary\">", 1)[1]
    name_of = {m["label"]: m["name"] for m in results.config["methods"]["metrics"]}
    for name, per_model in results["metrics"]["table"].items():
        cls = toolkit_core.get_info(name_of[name]).cls
        for key in {k.split("/", 1)[0] for vals in per_model.values() for k in vals}:
            definition = cls.definitions[key]
            assert f"<dt>{name}: {key}</dt><dd>{definition}</dd>" in glossary.replace("&#x27;", "'")
    assert "Health checks" in page.split("<nav>", 1)[0]
    assert "published anchors and claims:" in page and "PacGAN Table 1" in page


def test_collapsed_model_is_flagged_and_left_out_of_the_metric_axes(quick_run):
    out, results = quick_run
    data = json.loads((out / "results.json").read_text())
    models = data["stages"]["train"]["models"]
    flagged = {f["subject"] for f in data["health"] if f["check"] == "at chance"}
    assert flagged == {k for k, r in models.items() if r["test_acc"] < 0.2}
    page = (out / "index.html").read_text()
    for label in flagged:
        assert f"{label} ⚠" in page


def test_rerun_resumes_finished_stages_with_the_same_numbers(quick_run):
    out, first = quick_run
    again = Experiment.default(quick=first.config["quick"]).run(out, progress=False)
    assert set(again.resumed) == set(STAGES)  # train reuses its saved models; the others their results
    assert json.loads(again.to_json())["stages"] == json.loads(first.to_json())["stages"]


def test_same_seed_same_numbers_in_a_fresh_folder(tmp_path):
    cfg = {"stages": ["train", "robustness"], "defenses": [], "data": {"train_size": 300, "test_size": 60},
           "train": {"epochs": 1}, "attacks": [{"name": "pgd", "eps": 0.2, "steps": 3}]}
    a = Experiment.from_dict(cfg, quick=True).run(tmp_path / "a", progress=False)
    b = Experiment.from_dict(cfg, quick=True).run(tmp_path / "b", progress=False)
    for stage in ("train", "robustness"):
        sa, sb = json.loads(a.to_json())["stages"][stage], json.loads(b.to_json())["stages"][stage]
        for d in (sa, sb):  # the per-seed values include wall times
            d.pop("over_seeds")
        if stage == "train":
            for row in (*sa["models"].values(), *sb["models"].values()):
                row.pop("time_s")
        else:
            for row in (*sa["table"].values(), *sb["table"].values()):
                for att in row["attacks"].values():
                    att.pop("seconds", None)
            for model in (*sa.get("certification", {}).values(), *sb.get("certification", {}).values()):
                for cert in model.values():
                    cert.pop("seconds", None)  # wall-clock time, like the attacks'
        assert sa == sb


def test_bad_config_lists_every_problem_with_its_line_and_runs_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('seed = 1\n[train]\nepochs = "x"\n[[attacks]]\nname = "pgdd"\n[[attacks]]\nname = "pgd"\n'
                   'eps = -1\n[[metrics]]\nname = "margin"\nbogus = 1\n[colour]\nx = 1\n')
    with pytest.raises(ConfigError) as err:
        Experiment.from_toml(bad)
    lines = [line for line, _ in err.value.problems]
    assert lines == [3, 5, 8, 11, 12]  # the offending key's own line
    text = str(err.value)
    assert "did you mean 'pgd'" in text and "eps must be" in text and "unknown parameter 'bogus'" in text
    assert "train.epochs must be int" in text and "unknown section or key 'colour'" in text
    res = CliRunner().invoke(cli, ["run", str(bad), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and res.stderr.count(f"{bad}:") == 5
    assert not (tmp_path / "out").exists()  # nothing ran


FAKE_METRIC = '''
from toolkit_core import hookimpl
from toolkit_core.methods import Metric


class Params(Metric):
    name = "third_party_param_count"
    summary = "Number of parameters (a third-party metric)."
    citation = "arXiv:0000.00000"
    higher_is_better = {"parameters": False}

    def compute(self, model, data):
        return {"parameters": float(sum(p.numel() for p in model.parameters()))}


@hookimpl
def torchtrust_register_metrics(register):
    register(Params)
'''


def test_third_party_plugin_joins_the_default_experiment(tmp_path, fresh_registry):
    with with_plugin_on_path({"tp": "tt_third_party_metric"}, "torchtrust-third-party",
                             files={"tt_third_party_metric.py": FAKE_METRIC}):
        exp = Experiment.default(quick=True)
        assert "third_party_param_count" in [m.name for m in exp.config.methods["metrics"]]
        exp = Experiment.from_dict({"stages": ["train", "metrics"], "defenses": [], "train": {"epochs": 1},
                                    "data": {"train_size": 200, "test_size": 50},
                                    "metrics": [{"name": "third_party_param_count"}]}, quick=True)
        res = exp.run(tmp_path, progress=False)
        from toolkit_core.models import DigitsCNN

        expected = sum(p.numel() for p in DigitsCNN(16, 8, 32).parameters())
        assert res["metrics"]["table"]["third_party_param_count"]["plain"] == {"parameters": float(expected)}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium_and_shows_every_image(quick_run, tmp_path):
    out, results = quick_run
    n_figures = sum(len(s.get("figures", [])) for s in results.stages.values())
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1280,900", "--virtual-time-budget=5000", "--dump-dom", (out / "index.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f'data-images-loaded="{n_figures}/{n_figures}"' in proc.stdout
    assert "Uncaught" not in proc.stderr  # no JavaScript error on the page
    # at 1280 px no element is wider than the viewport (wide tables scroll inside their own box)
    assert 'data-viewport="1280"' in proc.stdout or "data-viewport=\"12" in proc.stdout
    assert 'data-too-wide="none"' in proc.stdout, proc.stdout.split("data-too-wide=", 1)[1][:200]


def test_cli_run_rejects_cuda_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = Path(tmp_path / "c.toml")
    cfg.write_text('stages = ["train"]\n')
    res = CliRunner().invoke(cli, ["run", str(cfg), "--device", "cuda", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "CUDA is not available" in res.stderr


def test_stage_dependencies_are_pulled_in_before_any_work():
    from toolkit_core.experiment.config import resolve_stages

    for stage in ("robustness", "attribution", "metrics"):
        exp = Experiment.from_dict({"stages": [stage]}, quick=True)
        assert exp.config.stages == ("train", stage) and exp.config.pulled_in == {"train": [stage]}
    assert resolve_stages(["generative"]) == (("generative",), {})
    assert resolve_stages(["metrics", "train"]) == (("train", "metrics"), {})
    # a user's [model] is the model to evaluate: train is not pulled in (tests/test_workloads_run.py runs it)
    assert resolve_stages(["robustness"], model_given=True) == (("robustness",), {})


def test_variant_labels_are_unique_and_short():
    exp = Experiment.default(quick=True)
    for section, specs in exp.config.methods.items():
        labels = [s.label for s in specs]
        assert len(labels) == len(set(labels)), (section, labels)
    from toolkit_core.experiment.config import MethodSpec, assign_labels

    specs = [MethodSpec("pgd", {"eps": 0.1, "steps": 10}), MethodSpec("pgd", {"eps": 0.3, "steps": 10}),
             MethodSpec("fgsm", {"eps": 0.1})]
    assert assign_labels(specs) == {}
    assert [s.label for s in specs] == ["pgd(eps=0.1)", "pgd(eps=0.3)", "fgsm"]


def test_duplicate_alias_is_a_config_error_with_its_line(tmp_path):
    bad = tmp_path / "dup.toml"
    bad.write_text('[[attacks]]\nname = "pgd"\nlabel = "x"\n[[attacks]]\nname = "fgsm"\nlabel = "x"\n')
    with pytest.raises(ConfigError) as err:
        Experiment.from_toml(bad)
    assert err.value.problems[0][0] == 6 and "share the label 'x'" in str(err.value)


def test_seeded_stages_report_mean_and_std_over_seeds_and_print_one_line_per_stage(tmp_path, capsys):
    import statistics

    cfg = {"stages": ["metrics"], "seeds": 2, "defenses": [], "data": {"train_size": 200, "test_size": 60},
           "train": {"epochs": 1}, "metrics": [{"name": "margin"}]}
    res = Experiment.from_dict(cfg, quick=True).run(tmp_path, progress=True)
    printed = capsys.readouterr().out
    per_seed = [json.loads((tmp_path / "state" / "train.json").read_text())["results"],
                json.loads((tmp_path / "seeds" / "seed1" / "state" / "train.json").read_text())["results"]]
    accs = [r["models"]["plain"]["test_acc"] for r in per_seed]
    assert res["train"]["models"]["plain"]["test_acc"] == pytest.approx(statistics.mean(accs))
    std = res["train"]["over_seeds"]["std"]["models"]["plain"]["test_acc"]
    assert std == pytest.approx(statistics.stdev(accs))
    assert res["train"]["over_seeds"]["values"]["models"]["plain"]["test_acc"] == accs
    margins = [json.loads((d / "state" / "metrics.json").read_text())["results"]["table"]["margin"]["plain"]
               for d in (tmp_path, tmp_path / "seeds" / "seed1")]
    assert res["metrics"]["table"]["margin"]["plain"]["margin_p10"] == pytest.approx(
        statistics.mean(m["margin_p10"] for m in margins))
    assert "mean ± std over 2 seeds" in res["train"]["summary"]
    page = (tmp_path / "index.html").read_text()
    assert f"{res['train']['models']['plain']['test_acc']:.4g} ± {std:.2g}" in page
    assert "partial run (train, metrics)" in page and "train added because metrics need(s) it" in page
    assert "Training: a plain digits CNN" in page and "defenses:" not in page and "attacks:" not in page
    assert printed.count("train (seed 0): started") == 1 and printed.count("train (seed 1): done") == 1
    assert printed.count("report: ") == 1 and "train: added because metrics need(s) it" in printed
    Experiment.from_dict(cfg, quick=True).run(tmp_path, progress=True)
    again = capsys.readouterr().out
    assert "metrics (seed 0): resumed" in again and "metrics (seed 1): resumed" in again
    assert "metrics (seed 0): done" not in again  # a resumed stage does not reprint its old timing
    assert again.count("report: ") == 1


def test_plain_progress_lines_while_a_stage_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHTRUST_PROGRESS_SECONDS", "0.05")
    cfg = {"stages": ["train"], "seeds": 1, "defenses": [], "data": {"train_size": 300, "test_size": 60},
           "train": {"epochs": 2}}
    Experiment.from_dict(cfg, quick=True).run(tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "  train: running for" in out and "train models 0/1" in out


def test_report_shows_each_methods_definition_and_every_claim_with_a_verdict(quick_run):
    """The AALP, MMCGAN and generalization sections show the definitions that ran and the claims
    (published anchors, the seeds' claims) beside our numbers, each with a verdict from the numbers."""
    out, results = quick_run
    page = (out / "index.html").read_text().replace("&#x27;", "'")

    def section(stage: str) -> str:
        return page.split(f"<section id='{stage}'>", 1)[1].split("</section>", 1)[0]

    train, generative, gap = section("train"), section("generative"), section("generalization")
    assert "How each method is defined in this run" in train and "rank_by=predicted" in train  # AALP's reading
    assert "embedding=sinusoidal" in generative and "code embedding" in generative  # MMCGAN's
    assert "MMCGAN covers the ring at least as well as PacGAN4" in generative and "PacGAN4: 7.8" in generative
    assert "Jiang et al." in gap and "tau_dir [95% CI]" in gap and "Psi [95% CI]" in gap
    assert "the parameter count does not predict the generalization gap" in gap
    rows = re.findall(r"<td class='v-(reproduced|not-reproduced|not-comparable)'", page)
    counts = re.search(r"published anchors and claims: (\d+) reproduced, (\d+) not reproduced, (\d+) not comparable",
                       page)
    assert counts and sum(map(int, counts.groups())) == len(rows) > 5
    g = results["generalization"]
    assert all(m["train_ce"] <= 0.02 for m in g["models"] if m["reached"])
    assert set(g["correlations"]) >= {"baseline.param_count", "baseline.inverse_margin"}
