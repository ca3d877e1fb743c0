"""The main job: the quick default experiment, resume, determinism, config errors, third-party plugins,
and the HTML report in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import toolkit_core
from registry.cli import cli
from toolkit_core.experiment import ConfigError, Experiment
from toolkit_core.experiment.config import STAGES
from toolkit_core.testing import with_plugin_on_path


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results = Experiment.default(quick=True).run(out, progress=False)
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
    assert set(metrics) == set(toolkit_core.list_methods("metric")) - set(skipped)
    assert all(toolkit_core.get_info(n).cls.applies_to != "classifier" for n in skipped)
    generative = data["stages"]["generative"]
    assert generative["table"], "the generative stage produced no rows"
    for stage in data["stages"].values():
        for fig in stage.get("figures", []):
            assert (out / fig).stat().st_size > 1000, fig
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == sum(len(s.get("figures", [])) for s in data["stages"].values())


def test_rerun_resumes_finished_stages_with_the_same_numbers(quick_run):
    out, first = quick_run
    again = Experiment.default(quick=True).run(out, progress=False)
    assert set(again.resumed) == set(STAGES)  # train reuses its saved models; the others their results
    assert json.loads(again.to_json())["stages"] == json.loads(first.to_json())["stages"]


def test_same_seed_same_numbers_in_a_fresh_folder(tmp_path):
    cfg = {"stages": ["train", "robustness"], "defenses": [], "data": {"train_size": 300, "test_size": 60},
           "train": {"epochs": 1}, "attacks": [{"name": "pgd", "eps": 0.2, "steps": 3}]}
    a = Experiment.from_dict(cfg, quick=True).run(tmp_path / "a", progress=False)
    b = Experiment.from_dict(cfg, quick=True).run(tmp_path / "b", progress=False)
    for stage in ("train", "robustness"):
        sa, sb = json.loads(a.to_json())["stages"][stage], json.loads(b.to_json())["stages"][stage]
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
         "--virtual-time-budget=5000", "--dump-dom", (out / "index.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f'data-images-loaded="{n_figures}/{n_figures}"' in proc.stdout
    assert "Uncaught" not in proc.stderr  # no JavaScript error on the page


def test_cli_run_rejects_cuda_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = Path(tmp_path / "c.toml")
    cfg.write_text('stages = ["train"]\n')
    res = CliRunner().invoke(cli, ["run", str(cfg), "--device", "cuda", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "CUDA is not available" in res.stderr
