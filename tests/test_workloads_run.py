"""`torchtrust run` on a user's model and data: CIFAR-10 pickles on disk, a model from the user's own
module or a local checkpoint, one process and two gloo processes under torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from registry.cli import cli
from toolkit_core.workloads import synthetic as syn

ROOT = Path(__file__).resolve().parents[1]
TINY = textwrap.dedent("""
    import torch
    from torch import nn

    def tiny(num_classes=10):
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                             nn.Linear(6 * 8 * 8, num_classes))
""")


def _config(tmp: Path, stages: str, extra_model: str = "", attacks: str = "") -> Path:
    text = f"""
        seed = 0
        stages = {stages}
        defenses = []
        [model]
        arch = "tinynets_wl:tiny"
        num_classes = 10
        mean = [0.5, 0.5, 0.5]
        std = [0.25, 0.25, 0.25]
        {extra_model}
        [data]
        dataset = "cifar10"
        root = "{tmp / 'data'}"
        batch_size = 8
        [train]
        epochs = 2
        lr = 0.01
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "pgd"
        steps = 3
        restarts = 2
        seed = 0
        [[metrics]]
        name = "maxent"
        {attacks}
    """
    path = tmp / "cfg.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def workload(tmp_path, monkeypatch):
    syn.write_cifar10(tmp_path / "data", 24, 20)
    (tmp_path / "tinynets_wl.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TORCHTRUST_PROGRESS", "off")
    yield tmp_path
    sys.modules.pop("tinynets_wl", None)


def _direct_accuracy(model: torch.nn.Module, tmp: Path) -> float:
    from toolkit_core.workloads import DataSpec, load_split

    ds = load_split(DataSpec("cifar10", root=str(tmp / "data")), "test")
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    with torch.no_grad():
        return float((model.eval()(x).argmax(1) == y).float().mean())


@pytest.mark.slow
def test_run_trains_attacks_and_measures_the_users_model_on_cifar_files(workload):
    cfg = _config(workload, '["train", "robustness", "metrics"]')
    out = workload / "report"
    res = CliRunner().invoke(cli, ["run", str(cfg), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["workload"] == {"model": "tinynets_wl:tiny", "data": "cifar10"}
    row = results["stages"]["train"]["models"]["plain"]
    table = results["stages"]["robustness"]["table"]["plain"]
    assert table["n"] == 20 and row["epochs"] == 2
    # the trained weights, reloaded and evaluated directly, give the reported accuracies
    from toolkit_core.workloads import ModelSpec, build_model

    model = build_model(ModelSpec("tinynets_wl:tiny", 10, mean=[0.5] * 3, std=[0.25] * 3))
    weights = next((out / "state" / "models").glob("plain-*.pt"))
    model.load_state_dict(torch.load(weights, weights_only=True)["state_dict"])
    acc = _direct_accuracy(model, workload)
    assert row["test_acc"] == pytest.approx(acc) and table["clean_accuracy"] == pytest.approx(acc)
    attacks = table["attacks"]
    eps = {k: v["params"]["params"]["eps"] for k, v in attacks.items()}
    assert list(eps.values()) == pytest.approx([8 / 255, 8 / 255])  # CIFAR's budget when eps is left out
    assert table["worst_case_accuracy"] <= min(a["accuracy"] for a in attacks.values()) <= acc
    assert "maxent" in results["stages"]["metrics"]["table"]
    page = (out / "index.html").read_text()
    assert "tinynets_wl:tiny" in page and "cifar10" in page


def test_run_evaluates_a_checkpoint_without_training(workload):
    from toolkit_core.workloads import ModelSpec, build_model

    torch.manual_seed(3)
    net = build_model(ModelSpec("tinynets_wl:tiny", 10)).net
    torch.save(net.state_dict(), workload / "mine.pth")
    cfg = _config(workload, '["robustness"]', extra_model=f'checkpoint = "{workload / "mine.pth"}"')
    out = workload / "report"
    res = CliRunner().invoke(cli, ["run", str(cfg), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    (label, table), = results["stages"]["robustness"]["table"].items()
    assert label == "tinynets_wl:tiny (mine.pth)" and not (out / "state" / "models").exists()
    # the checkpoint stands in for train (not pulled in); a user's workload runs one seed unless asked
    assert results["config"]["stages"] == ["robustness"] and results["config"]["seeds"] == 1
    model = build_model(ModelSpec("tinynets_wl:tiny", 10, mean=[0.5] * 3, std=[0.25] * 3,
                                  checkpoint=str(workload / "mine.pth")))
    assert table["clean_accuracy"] == pytest.approx(_direct_accuracy(model, workload))


def test_config_problems_name_the_line(workload):
    from toolkit_core.experiment import ConfigError, Experiment

    cfg = workload / "bad.toml"
    cfg.write_text('[model]\narch = "resnet18"\n[data]\ndataset = "cifar11"\n')
    with pytest.raises(ConfigError) as info:
        Experiment.from_toml(cfg)
    text = str(info.value)
    assert "bad.toml:2: model.arch must be" in text and "bad.toml:4: data.dataset 'cifar11' is not known" in text


def test_cuda_is_refused_clearly_without_a_gpu(workload):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the run would use it")
    cfg = _config(workload, '["robustness"]')
    res = CliRunner().invoke(cli, ["run", str(cfg), "--device", "cuda:0", "--out", str(workload / "r")])
    assert res.exit_code != 0 and "CUDA is not available here" in res.output


def _numbers(results: dict) -> dict:
    train = results["stages"]["train"]["models"]["plain"]
    rob = results["stages"]["robustness"]["table"]["plain"]
    return {"train_acc": train["train_acc"], "test_acc": train["test_acc"], "final_loss": train["final_loss"],
            "clean": rob["clean_accuracy"], "worst": rob["worst_case_accuracy"],
            **{k: v["accuracy"] for k, v in rob["attacks"].items()}}


@pytest.mark.slow
def test_two_gloo_processes_give_the_numbers_of_one(workload):
    cfg = _config(workload, '["train", "robustness", "metrics"]')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workload), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "TORCHTRUST_PROGRESS": "off"}
    one = subprocess.run([sys.executable, "-m", "registry.cli", "run", str(cfg), "--out", str(workload / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29517", "-m", "registry.cli", "run", str(cfg), "--out", str(workload / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = _numbers(json.loads((workload / "one" / "results.json").read_text()))
    b = _numbers(json.loads((workload / "two" / "results.json").read_text()))
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    assert two.stdout.count("report: ") == 1  # one report, from rank 0 (its path printed once)


@pytest.mark.slow
def test_example_cifar10_config_with_resnet18(tmp_path, monkeypatch):
    """examples/cifar10.toml as shipped (ResNet-18, CIFAR stem) on a small generated CIFAR-10."""
    syn.write_cifar10(tmp_path / "data", 40, 16)
    shutil.copy(ROOT / "examples" / "cifar10.toml", tmp_path / "cifar10.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCHTRUST_PROGRESS", "off")
    res = CliRunner().invoke(cli, ["run", "cifar10.toml", "--out", "report"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["config"]["workload"] == {"model": "resnet18", "data": "cifar10"}
    assert set(results["stages"]) == {"train", "robustness", "attribution", "metrics"}
    rob = results["stages"]["robustness"]["table"]["plain"]
    assert rob["n"] == 16 and rob["worst_case_accuracy"] <= rob["clean_accuracy"]
    assert not results["stages"]["attribution"]["errors"]
    assert (tmp_path / "report" / "index.html").read_text().count("resnet18") >= 1


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA GPU on this machine: `torchtrust run examples/cifar10.toml --device cuda` "
                           "needs one (benchmarks/gpu.py times it on a GPU machine)")
def test_example_cifar10_config_on_cuda(tmp_path, monkeypatch):
    """examples/cifar10.toml with --device cuda on a small generated CIFAR-10: the same stages and report."""
    syn.write_cifar10(tmp_path / "data", 40, 16)
    shutil.copy(ROOT / "examples" / "cifar10.toml", tmp_path / "cifar10.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCHTRUST_PROGRESS", "off")
    res = CliRunner().invoke(cli, ["run", "cifar10.toml", "--device", "cuda", "--out", "report"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["config"]["device"] == "cuda"
    assert set(results["stages"]) == {"train", "robustness", "attribution", "metrics"}
    rob = results["stages"]["robustness"]["table"]["plain"]
    assert rob["n"] == 16 and rob["worst_case_accuracy"] <= rob["clean_accuracy"]
    assert not results["stages"]["attribution"]["errors"]


def test_precision_in_the_config_and_on_the_command_line(workload):
    from toolkit_core.experiment import ConfigError, Experiment

    cfg = _config(workload, '["robustness"]')
    base = Experiment.from_toml(cfg).config
    assert base.precision == "fp32" and "precision" not in base.to_dict()  # float32 fingerprints unchanged
    bf16 = Experiment.from_toml(cfg, precision="bf16").config
    assert bf16.precision == "bf16" and bf16.to_dict()["precision"] == "bf16"
    assert bf16.fingerprint("robustness") != base.fingerprint("robustness")
    assert bf16.fingerprint("attribution") != base.fingerprint("attribution")  # on models trained at bf16
    assert "attribution runs in float32" in bf16.precision_note() and base.precision_note() is None
    text = cfg.read_text()
    cfg.write_text('precision = "bf16"\n' + text)
    assert Experiment.from_toml(cfg).config.precision == "bf16"
    cfg.write_text('precision = "fp16"\n' + text)
    with pytest.raises(ConfigError) as info:
        Experiment.from_toml(cfg)
    assert "cfg.toml:1: precision 'fp16' needs a CUDA device" in str(info.value)
    res = CliRunner().invoke(cli, ["run", str(cfg), "--precision", "fp16", "--out", str(workload / "r")])
    assert res.exit_code != 0 and "precision 'fp16' needs a CUDA device" in res.output


@pytest.mark.slow
def test_bf16_run_attributes_in_float32_and_attacks_close_to_fp32(workload, monkeypatch):
    """The same checkpoint evaluated at fp32 and at bf16: attribution numbers identical, attacks close."""
    from toolkit_core.workloads import ModelSpec, build_model

    monkeypatch.setenv("TORCHTRUST_PROGRESS", "plain")  # the console's stage lines, as in a CI log

    torch.manual_seed(3)
    net = build_model(ModelSpec("tinynets_wl:tiny", 10)).net
    torch.save(net.state_dict(), workload / "mine.pth")
    cfg = _config(workload, '["robustness", "attribution"]', extra_model=f'checkpoint = "{workload / "mine.pth"}"')
    text = cfg.read_text() + '\n[[attribution]]\nname = "lrp"\n[[attribution]]\nname = "gradient"\n'
    cfg.write_text(text.replace("[analysis]", "") + "\n[analysis]\nsamples = 4\nrandomization = false\n")
    runs = {}
    for p in ("fp32", "bf16"):
        res = CliRunner().invoke(cli, ["run", str(cfg), "--precision", p, "--out", str(workload / p)],
                                 catch_exceptions=False)
        assert res.exit_code == 0, res.output
        runs[p] = (json.loads((workload / p / "results.json").read_text()), res.output)
    (a, out_a), (b, out_b) = runs["fp32"], runs["bf16"]
    assert "attribution runs in float32" in out_b and "attribution runs in float32" not in out_a
    assert "precision bf16" in (workload / "bf16" / "index.html").read_text()
    att_a, att_b = a["stages"]["attribution"], b["stages"]["attribution"]
    assert att_b["precision"] == "fp32" and "does not apply to attribution" in att_b["summary"]
    numbers = {k: v for k, v in att_a.items() if k not in ("summary", "figures")}
    assert numbers and {k: att_b[k] for k in numbers} == numbers  # bit-identical analyses of the maps
    ra, rb = a["stages"]["robustness"]["table"], b["stages"]["robustness"]["table"]
    for label in ra:
        assert abs(ra[label]["clean_accuracy"] - rb[label]["clean_accuracy"]) <= 0.1  # 20 images: 2 may flip
        for k in ra[label]["attacks"]:
            assert abs(ra[label]["attacks"][k]["accuracy"] - rb[label]["attacks"][k]["accuracy"]) <= 0.1


def test_a_users_model_keeps_torchs_thread_count_the_digits_run_one_thread(workload):
    """The tiny-model stages run single-threaded on the embedded digits; on the user's own model and data
    they keep the thread count the user set (a ResNet on a many-core CPU needs its threads)."""
    from toolkit_core.experiment import Experiment
    from toolkit_core.experiment.runner import run_stages
    from toolkit_core.threads import torch_threads

    seen: dict[str, int] = {}

    def record(name):
        def fn(ctx):
            seen[name] = torch.get_num_threads()
            return {}
        return fn

    user = Experiment.from_toml(_config(workload, '["robustness"]')).config
    digits = Experiment.from_dict({"stages": ["generative"]}, quick=True).config
    with torch_threads(2):
        run_stages(user, workload / "u", {"robustness": record("user")}, show_progress=False)
        run_stages(digits, workload / "d", {"generative": record("digits")}, show_progress=False)
        assert torch.get_num_threads() == 2  # restored
    assert seen == {"user": 2, "digits": 1}
