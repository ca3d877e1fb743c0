"""Hostile-user regression tests (issue 19): nothing lost, nothing stale, nothing silent.

One section per numbered case of the issue; each test failed on the code before the fix. The list of
guarantees and the test proving each is in docs/reliability.md.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import toolkit_core
from toolkit_core.models import DigitsCNN
from toolkit_core.modelstate import ModelSnapshot

ALL = toolkit_core.list_methods()
ATTRIBUTION = toolkit_core.list_methods("attribution")
ATTACKS = toolkit_core.list_methods("attack")
CLASSIFIER_METRICS = [n for n in toolkit_core.list_methods("metric")
                      if getattr(toolkit_core.get_info(n).cls, "applies_to", "classifier") == "classifier"]


class HostileCNN(DigitsCNN):
    """A digits CNN a careless user might hand us: in-place first layer, BatchNorm left in train mode."""

    def __init__(self):
        super().__init__(size=16, width=4, hidden=16)
        conv1, _, pool1, conv2, relu2, pool2 = self.features
        self.features = nn.Sequential(nn.Hardtanh(0.25, 0.75, inplace=True), conv1, nn.BatchNorm2d(4),
                                      nn.ReLU(inplace=True), pool1, conv2, relu2, pool2)


def _hostile_model() -> nn.Module:
    torch.manual_seed(0)
    model = HostileCNN()
    with torch.no_grad():  # non-trivial running statistics, so an update is visible
        model.features[2].running_mean.uniform_(-0.1, 0.1)
    return model.train()


def _batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- 5. models and inputs unchanged


@pytest.mark.parametrize("name", ATTRIBUTION)
def test_5_attribution_leaves_model_and_input_bit_identical(name):
    from toolkit_core.attribution.engine import UnsupportedLayerError

    model, (x, y) = _hostile_model(), _batch()
    snap, x0, y0 = ModelSnapshot.take(model), x.clone(), y.clone()
    method = toolkit_core.create(name, **toolkit_core.get_info(name).cls.contract_params())
    try:
        r = _quiet(method, model, x, y)
        assert r.shape == x.shape and torch.isfinite(r).all()
    except (UnsupportedLayerError, ValueError) as exc:  # a rule may refuse this model (e.g. zB without bounds) ...
        assert name not in ("gradient", "input_x_gradient", "gbp"), exc
        # ... but must still leave everything as it was
    snap.assert_unchanged(model)  # BatchNorm running statistics included
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("name", ATTACKS)
def test_5_attack_leaves_model_and_input_bit_identical(name):
    model, (x, y) = _hostile_model(), _batch()
    snap, x0, y0 = ModelSnapshot.take(model), x.clone(), y.clone()
    attack = toolkit_core.create(name, **toolkit_core.get_info(name).cls.contract_params())
    x_adv = attack(model, x, y)
    assert x_adv.shape == x.shape and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    snap.assert_unchanged(model)
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("name", CLASSIFIER_METRICS)
def test_5_metric_leaves_model_and_input_bit_identical(name):
    model, (x, y) = _hostile_model(), _batch(32)
    snap, x0, y0 = ModelSnapshot.take(model), x.clone(), y.clone()
    metric = toolkit_core.create(name, **toolkit_core.get_info(name).cls.contract_params())
    out = _quiet(metric.compute, model, (x, y))
    assert out and all(v == v for v in out.values())
    snap.assert_unchanged(model)
    assert torch.equal(x, x0) and torch.equal(y, y0)


@pytest.mark.parametrize("name", toolkit_core.list_methods("detector"))
def test_5_detector_leaves_model_and_input_bit_identical(name):
    model, (x, y) = _hostile_model(), _batch(32)
    snap, x0, y0 = ModelSnapshot.take(model), x.clone(), y.clone()
    detector = toolkit_core.create(name, **toolkit_core.get_info(name).cls.contract_params())
    _quiet(detector.fit, model, (x, y))
    s = _quiet(detector.score, model, x)
    assert s.shape == (32,) and torch.isfinite(s).all()
    snap.assert_unchanged(model)
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_5_evaluate_robustness_leaves_model_and_input_bit_identical():
    model, (x, y) = _hostile_model(), _batch(16)
    snap, x0 = ModelSnapshot.take(model), x.clone()
    res = _quiet(toolkit_core.evaluate_robustness, model, (x, y), attacks=[("fgsm", {"eps": 0.1})])
    assert 0 <= res.worst_case_accuracy <= res.clean_accuracy <= 1
    snap.assert_unchanged(model)
    assert torch.equal(x, x0)


@pytest.mark.parametrize("method", ["gradient", "gbp", "lrp"])
def test_5_layerwise_leaves_model_and_input_bit_identical(method):
    from toolkit_core.attribution import layerwise

    model, (x, y) = _hostile_model(), _batch()
    snap, x0 = ModelSnapshot.take(model), x.clone()
    res = _quiet(layerwise, model, x, y, method=method)
    assert res.attribution.shape == x.shape and torch.isfinite(res.attribution).all() and res.relevance
    snap.assert_unchanged(model)
    assert torch.equal(x, x0)


def test_5_gradient_in_train_mode_keeps_batchnorm_statistics():
    model, (x, y) = _hostile_model(), _batch()
    bn = model.features[2]
    mean, var, count = bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()
    for name in ("gradient", "input_x_gradient"):
        _quiet(toolkit_core.attribute, model, x, y, method=name)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert int(bn.num_batches_tracked) == int(count)


# --------------------------------------------------------------------------- 6. silent acceptance


@pytest.mark.parametrize("shape", [(2, 2), (4, 1)])
def test_6_target_of_wrong_shape_is_refused(shape):
    model, (x, _) = DigitsCNN(size=16, width=4, hidden=16).eval(), _batch(4)
    with pytest.raises(ValueError, match=r"one class index per sample, shape \(4,\)"):
        toolkit_core.attribute(model, x, torch.zeros(shape, dtype=torch.long), method="gradient")


def test_6_dropout_in_train_mode_warns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10)).train()
    x, y = _batch(4)
    with pytest.warns(RuntimeWarning, match="train mode"):
        toolkit_core.attribute(model, x, y, method="gradient")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eval mode: no warning
        toolkit_core.attribute(model.eval(), x, y, method="gradient")


# --------------------------------------------------------------------------- 8. unclear errors


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text.strip(), text
    return text


def test_8_input_of_wrong_shape_says_so():
    model = DigitsCNN(size=16, width=4, hidden=16).eval()
    x = torch.rand(2, 1, 28, 28)
    for call in (lambda: toolkit_core.attribute(model, x, 0, method="gradient"),
                 lambda: toolkit_core.create("fgsm", eps=0.1)(model, x, torch.zeros(2, dtype=torch.long))):
        with pytest.raises(ValueError) as err:
            call()
        msg = _one_line(err.value)
        assert "(2, 1, 28, 28)" in msg and "the model cannot take an input" in msg


def test_8_model_returning_a_tuple_says_so():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = DigitsCNN(size=16, width=4, hidden=16)

        def forward(self, x):
            return self.net(x), x

    x, y = _batch(2)
    with pytest.raises(TypeError) as err:
        toolkit_core.create("fgsm", eps=0.1)(Pair().eval(), x, y)
    assert "returned tuple" in _one_line(err.value)


def test_8_meta_device_model_says_so():
    with torch.device("meta"):
        model = DigitsCNN(size=16, width=4, hidden=16)
    x, y = _batch(2)
    with pytest.raises(ValueError) as err:
        toolkit_core.attribute(model, x, y, method="gradient")
    assert "meta device" in _one_line(err.value) and "to_empty" in str(err.value)


def test_8_in_place_first_layer_just_works():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(256, 10)).eval()
    x = torch.randn(3, 1, 16, 16)
    x0 = x.clone()
    g = toolkit_core.attribute(model, x, 1, method="gradient")
    expected = model[2].weight[1].view(1, 1, 16, 16) * (x0 > 0)  # d logit_1 / dx through ReLU
    torch.testing.assert_close(g, expected.expand_as(g), rtol=0, atol=1e-6)
    assert torch.equal(x, x0)


# --------------------------------------------------------------------------- memory: chunked batches


def test_chunked_attribution_and_attack_equal_the_whole_batch():
    model = DigitsCNN(size=16, width=4, hidden=16).eval()
    x, y = _batch(10)
    parts = [(x[i:i + 3], y[i:i + 3]) for i in range(0, 10, 3)]
    for name in ("gradient", "input_x_gradient"):
        chunked = toolkit_core.attribute(model, x, y, method=name, batch_size=3)
        by_hand = torch.cat([toolkit_core.attribute(model, xc, yc, method=name) for xc, yc in parts])
        assert torch.equal(chunked, by_hand)  # exactly the calls on the chunks, concatenated
        whole = toolkit_core.attribute(model, x, y, method=name, batch_size=10)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-7)  # = the whole batch up to rounding
    fgsm = toolkit_core.create("fgsm", eps=0.1)
    assert torch.equal(fgsm(model, x, y, batch_size=3), torch.cat([fgsm(model, xc, yc) for xc, yc in parts]))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fgsm(model, x, y, batch_size=0)


def test_default_chunk_is_sized_to_the_input():
    from toolkit_core.chunking import CPU_INPUT_BUDGET, default_batch_size

    assert default_batch_size(torch.zeros(32_000, 1, 16, 16)) == CPU_INPUT_BUDGET // (16 * 16 * 4)
    assert default_batch_size(torch.zeros(3, 3, 224, 224)) == 3
    assert default_batch_size(torch.zeros(100, 3, 2048, 2048)) == 1


# --------------------------------------------------------------------------- 2. ignored settings: fit(resume=True)


def _fit_data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    from toolkit_core.data import load_digits

    x, y = load_digits(8, "train").tensors
    return x[:n].contiguous(), y[:n].contiguous()


def _fit_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return DigitsCNN(size=8, width=4, hidden=16)


def test_2_resume_with_more_epochs_continues_to_the_new_target(tmp_path):
    from toolkit_core.training import fit

    data = _fit_data()
    fit(_fit_model(), data, epochs=1, lr=1e-2, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    resumed = _fit_model(seed=7)
    hist = fit(resumed, data, epochs=2, lr=1e-2, batch_size=32, progress=False, checkpoint_dir=tmp_path,
               resume=True)
    ref = _fit_model()
    ref_hist = fit(ref, data, epochs=2, lr=1e-2, batch_size=32, progress=False)
    assert len(hist) == 2 and hist["loss"] == ref_hist["loss"]  # one more epoch, bit for bit
    for a, b in zip(resumed.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change", [{"lr": 5e-2}, {"epochs": 1}, {"batch_size": 64}, {"seed": 3},
                                    {"optimizer": "sgd"}])
def test_2_resume_with_other_settings_refuses(tmp_path, change):
    from toolkit_core.training import fit
    from toolkit_core.training.checkpoint import CheckpointError

    data = _fit_data()
    base = {"epochs": 2, "lr": 1e-2, "batch_size": 32, "seed": 0, "optimizer": "adam"}
    fit(_fit_model(), data, **base, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError) as err:
        fit(_fit_model(), data, **{**base, **change}, progress=False, checkpoint_dir=tmp_path, resume=True)
    key = next(iter(change))
    assert str(tmp_path) in str(err.value) and (f"{key}=" in str(err.value) or "epoch" in str(err.value))


# --------------------------------------------------------------------------- 4. checkpoint loading safety


class _Planted:
    """Unpickling this object runs code (it touches a file): what a planted checkpoint would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_files(tmp_path) -> dict[str, object]:
    good = tmp_path / "good.pt"
    torch.save({"a": torch.arange(100)}, good)
    files = {"empty": tmp_path / "empty.pt", "truncated": tmp_path / "truncated.pt",
             "garbage": tmp_path / "garbage.pt", "planted": tmp_path / "planted.pt"}
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["garbage"].write_bytes(b"not a checkpoint at all\n" * 10)
    torch.save({"x": _Planted(str(tmp_path / "code-ran"))}, files["planted"])
    return files


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "planted"])
def test_4_bad_checkpoint_is_one_line_naming_the_file_and_runs_nothing(tmp_path, kind):
    from toolkit_core.training.checkpoint import CheckpointError, load_checkpoint

    path = _bad_files(tmp_path)[kind]
    (tmp_path / "ck").mkdir()
    path.rename(tmp_path / "ck" / "last.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "ck")
    msg = _one_line(err.value)
    assert str(tmp_path / "ck" / "last.pt") in msg and "delete it" in msg
    assert "weights_only=False" not in msg
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("kind", ["empty", "truncated", "planted"])
def test_4_a_users_model_checkpoint_that_is_bad_is_one_line(tmp_path, kind):
    from toolkit_core.training.checkpoint import CheckpointError
    from toolkit_core.workloads.models import load_checkpoint

    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(DigitsCNN(), path)
    msg = _one_line(err.value)
    assert str(path) in msg and "torch.save(model.state_dict(), path)" in msg
    assert not (tmp_path / "code-ran").exists()


def test_4_resuming_fit_from_a_truncated_checkpoint_says_so(tmp_path):
    from toolkit_core.training import fit
    from toolkit_core.training.checkpoint import CheckpointError

    data = _fit_data(64)
    fit(_fit_model(), data, epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        fit(_fit_model(), data, epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path, resume=True)


# --------------------------------------------------------------------------- the main job's output folder

TINY = {"stages": ["train"], "defenses": [], "data": {"train_size": 64, "test_size": 32, "size": 8},
        "model": {"width": 2, "hidden": 8}, "train": {"epochs": 1}}


def _tiny(**changes):
    from toolkit_core.experiment import Experiment

    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for key, value in changes.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return Experiment.from_dict(cfg, quick=True)


def _weights(out) -> dict[str, torch.Tensor]:
    from toolkit_core.training.checkpoint import load_file

    (path,) = sorted((out / "state" / "models").glob("plain-*.pt"), key=lambda p: p.stat().st_mtime)[-1:]
    return load_file(path)["state_dict"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- 1. stale results


@pytest.mark.parametrize("change", [{"seed": 1}, {"train": {"lr": 0.01}}])
def test_1_rerun_with_another_config_never_reuses_the_old_model(tmp_path, change):
    shared = tmp_path / "shared"
    _tiny().run(shared, progress=False)
    old = _weights(shared)
    new_run = _tiny(**change).run(shared, progress=False)
    fresh = _tiny(**change).run(tmp_path / "fresh", progress=False)
    assert not _same(_weights(shared), old)  # the other config's model was not reused ...
    assert _same(_weights(shared), _weights(tmp_path / "fresh"))  # ... it equals a run in an empty folder
    assert new_run["train"]["models"]["plain"]["test_acc"] == fresh["train"]["models"]["plain"]["test_acc"]
    assert "train" not in new_run.resumed


def test_1_training_checkpoints_are_keyed_per_seed(tmp_path):
    for seed in (0, 1):
        _tiny(seed=seed).run(tmp_path, progress=False)
    dirs = sorted(p.name for p in (tmp_path / "state" / "checkpoints").iterdir())
    assert len(dirs) == 2 and all(d.startswith("plain-") for d in dirs)  # one per seed, none shared


def test_1_a_second_concurrent_run_into_the_folder_is_refused(tmp_path):
    from toolkit_core.experiment.outdir import OutputFolderError, locked, prepare_output

    prepare_output(tmp_path / "out")
    with locked(tmp_path / "out"):  # another run holds the folder
        with pytest.raises(OutputFolderError) as err:
            _tiny(seed=1).run(tmp_path / "out", progress=False)
    assert "another torchtrust run" in _one_line(err.value) and not (tmp_path / "out" / "state").exists()
    _tiny(seed=1).run(tmp_path / "out", progress=False)  # released: runs


def test_1_the_lock_holds_across_processes(tmp_path):
    import subprocess
    import sys

    from toolkit_core.experiment.outdir import OutputFolderError, locked, prepare_output

    out = prepare_output(tmp_path / "out")
    code = ("import sys, time; from toolkit_core.experiment.outdir import locked\n"
            f"with locked({str(out)!r}):\n    print('held', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputFolderError, match=f"pid {proc.pid}"):
            with locked(out):
                pass
    finally:
        proc.kill()
        proc.wait()
    with locked(out):  # a killed holder leaves no stale lock
        pass


# --------------------------------------------------------------------------- 2. ignored settings: CLI flags


def _cli(*args):
    from click.testing import CliRunner

    from registry.cli import cli

    return CliRunner().invoke(cli, list(args))


def _toml(tmp_path, extra: str = "") -> str:
    path = tmp_path / "c.toml"
    path.write_text(extra + 'stages = ["train"]\ndefenses = []\n[data]\ntrain_size = 64\ntest_size = 32\nsize = 8\n'
                    "[model]\nwidth = 2\nhidden = 8\n[train]\nepochs = 1\n")
    return str(path)


def test_2_toml_seed_is_kept_unless_the_flag_is_given(tmp_path):
    import json

    cfg = _toml(tmp_path, "seed = 5\n")
    res = _cli("run", cfg, "--out", str(tmp_path / "a"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "results.json").read_text())["config"]["seed"] == 5
    res = _cli("run", cfg, "--out", str(tmp_path / "b"), "--seed", "7")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b" / "results.json").read_text())["config"]["seed"] == 7


def test_2_toml_device_cuda_is_not_silently_run_on_the_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    res = _cli("run", _toml(tmp_path, 'device = "cuda"\n'), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "CUDA is not available" in res.stderr and 'device = "cuda"' in res.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- 3. data loss


def test_3_out_with_the_users_files_is_refused_without_force(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    mine = {"index.html": "<p>my page</p>", "results.json": '{"mine": 1}', "plot.png": "PNG"}
    for name, text in mine.items():
        (out / name).write_text(text)
    res = _cli("run", _toml(tmp_path), "--out", str(out))
    assert res.exit_code == 1 and "--force" in res.stderr and "did not write" in res.stderr
    assert {p.name: p.read_text() for p in out.iterdir()} == mine  # untouched
    res = _cli("run", _toml(tmp_path), "--out", str(out), "--force")
    assert res.exit_code == 0, res.output
    assert (out / ".torchtrust").exists() and (out / "plot.png").read_text() == "PNG"
    res = _cli("run", _toml(tmp_path), "--out", str(out))  # now ours: no --force needed
    assert res.exit_code == 0, res.output


def test_8_out_being_a_file_is_one_line(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("mine")
    res = _cli("run", _toml(tmp_path), "--out", str(target))
    assert res.exit_code == 1 and "is a file, not a folder" in res.stderr and target.read_text() == "mine"


# --------------------------------------------------------------------------- 4. planted files in the output folder


def test_4_planted_model_file_runs_no_code(tmp_path):
    out = tmp_path / "out"
    _tiny().run(out, progress=False)
    (weights,) = (out / "state" / "models").glob("plain-*.pt")
    torch.save({"state_dict": {}, "row": {}, "key": weights.stem.split("-")[-1],
                "x": _Planted(str(tmp_path / "code-ran"))}, weights)
    with pytest.raises(Exception) as err:
        _tiny().run(out, progress=False)
    assert str(weights) in str(err.value) and "refused" in str(err.value)
    assert not (tmp_path / "code-ran").exists()


# --------------------------------------------------------------------------- 6. settings checked before any work


@pytest.mark.parametrize("section, key, value, message", [
    ("data", "train_size", -5, "data.train_size must be >= 0"),
    ("analysis", "samples", 0, "analysis.samples must be >= 1"),
    ("generative", "mixtures", ["ring", "spiral"], "'spiral' is not allowed"),
    ("train", "lr", 0.0, "train.lr must be > 0"),
])
def test_6_out_of_range_settings_are_config_errors(tmp_path, section, key, value, message):
    from toolkit_core.experiment import ConfigError

    with pytest.raises(ConfigError, match=message):
        _tiny(**{section: {key: value}})


# --------------------------------------------------------------------------- 7. plugin mistakes that passed as healthy

_METRIC = '''
import sys
from toolkit_core import hookimpl
from toolkit_core.methods import Metric


class M(Metric):
    name = "{method}"
    summary = "A test metric."
    citation = "arXiv:0000.00000"
    higher_is_better = {{"v": True}}

    def __init__(self, scale: float = 1.0):
        {init}
        self.scale = scale

    def compute(self, model, data):
        return {{"v": self.scale}}

{top}

@hookimpl
def {hook}(register):
    {body}
    register(M)
'''


def _plugin_src(method="hostile_metric", hook="torchtrust_register_metrics", body="pass", init="pass", top=""):
    return _METRIC.format(method=method, hook=hook, body=body, init=init, top=top)


@pytest.fixture
def fake_plugins(monkeypatch):
    """Install fake plugin distributions (name -> source) and rediscover; restore the registry afterwards."""
    import contextlib

    import registry
    from toolkit_core.testing import with_plugin_on_path

    stack = contextlib.ExitStack()
    old = registry.set_manager(None)

    def install(**sources: str):
        for ep, src in sources.items():
            dist = f"torchtrust-hostile-{ep.replace('_', '-')}"
            stack.enter_context(with_plugin_on_path({ep: f"tt_hostile_{ep}"}, distribution=dist, version="1.0",
                                                    files={f"tt_hostile_{ep}.py": src}))
        registry.set_manager(None)
        return registry

    try:
        yield install
    finally:
        stack.close()
        registry.set_manager(old)


def test_7_misspelt_hook_name_fails_the_plugin_and_doctor(fake_plugins):
    reg = fake_plugins(typo=_plugin_src(hook="torchtrust_register_metric"))
    rec = reg.get_manager().plugins["typo"]
    assert rec.status == "failed" and "did you mean 'torchtrust_register_metrics'" in rec.error
    res = _cli("doctor")
    assert res.exit_code == 1 and "all good" not in res.output and "unknown hook" in res.output


@pytest.mark.parametrize("env", ["TORCHTRUST_PLUGINS", "TORCHTRUST_DISABLE_PLUGINS"])
def test_7_unknown_names_in_the_allow_or_block_list_are_an_error(fake_plugins, monkeypatch, env, tmp_path):
    from toolkit_core.errors import PluginSelectionError

    monkeypatch.setenv(env, "gradiant")
    reg = fake_plugins()
    with pytest.raises(PluginSelectionError, match="'gradiant'.*did you mean 'gradient'"):
        reg.get_manager().list_methods()
    for args in (["doctor"], ["list"], ["plugins", "--json"], ["run", "--quick", "--out", str(tmp_path / "o")]):
        res = _cli(*args)
        assert res.exit_code == 1 and "gradiant" in res.stderr + res.output and "all good" not in res.output
    assert not (tmp_path / "o").exists()  # run stopped before any work


def test_7_a_hook_calling_sys_exit_fails_only_its_plugin(fake_plugins):
    reg = fake_plugins(quitter=_plugin_src(body="sys.exit(3)"))
    mgr = reg.get_manager()
    assert mgr.plugins["quitter"].status == "failed" and "SystemExit" in mgr.plugins["quitter"].error
    assert "gradient" in mgr.list_methods()  # everything else still works


def test_7_a_plugin_printing_on_import_keeps_json_valid(fake_plugins):
    import json

    fake_plugins(chatty=_plugin_src(top='print("hello from the plugin")', body='print("registering")'))
    res = _cli("plugins", "--json")
    assert res.exit_code == 0
    assert {p["name"]: p["status"] for p in json.loads(res.stdout)}["chatty"] == "loaded"
    listed = json.loads(_cli("list", "--json").stdout)
    assert "hostile_metric" in [m["name"] for m in listed]


def test_7_doctor_creates_every_method_and_fails_on_a_raising_constructor(fake_plugins):
    fake_plugins(badinit=_plugin_src(init='raise RuntimeError("needs a GPU license")'))
    res = _cli("doctor")
    assert res.exit_code == 1 and "hostile_metric cannot be created" in res.output and "GPU license" in res.output


def test_7_default_experiment_leaves_out_a_method_that_cannot_be_created(fake_plugins):
    from toolkit_core.experiment import Experiment

    fake_plugins(badinit=_plugin_src(init='raise RuntimeError("needs a GPU license")'))
    with pytest.warns(UserWarning, match="hostile_metric.*GPU license"):
        exp = Experiment.default(quick=True)
    assert "hostile_metric" not in [m.name for m in exp.config.methods["metrics"]]
    assert "margin" in [m.name for m in exp.config.methods["metrics"]]
    assert "hostile_metric" in exp.config.left_out


def test_7_two_distributions_with_one_entry_point_name_give_one_clear_line(fake_plugins):
    import contextlib

    import registry
    from toolkit_core.testing import with_plugin_on_path

    with contextlib.ExitStack() as stack:
        for dist, method in (("torchtrust-first", "first_metric"), ("torchtrust-second", "second_metric")):
            stack.enter_context(with_plugin_on_path(
                {"samename": f"tt_{method}"}, distribution=dist, version="1.0",
                files={f"tt_{method}.py": _plugin_src(method=method)}))
        registry.set_manager(None)
        mgr = registry.get_manager()
        recs = [r for r in mgr.plugins.values() if r.name.startswith("samename")]
        assert len(recs) == 2  # neither is hidden
        failed = [r for r in recs if r.status == "failed"]
        assert len(failed) == 1 and len(failed[0].error) < 200 and "used by both" in failed[0].error
        assert "torchtrust-first" in failed[0].error and "torchtrust-second" in failed[0].error
        res = _cli("doctor")
        assert res.exit_code == 1 and "used by both" in res.output
        registry.set_manager(None)


# --------------------------------------------------------------------------- 8. unclear errors (catalog)


def test_8_wrong_case_name_suggests_the_method():
    res = _cli("info", "LRP")
    assert res.exit_code == 1 and "did you mean 'lrp'" in res.stderr


def test_8_disabled_method_is_reported_as_disabled(fake_plugins, monkeypatch):
    monkeypatch.setenv("TORCHTRUST_DISABLE_PLUGINS", "fgsm")
    reg = fake_plugins()
    from toolkit_core.errors import UnknownMethodError

    with pytest.raises(UnknownMethodError, match="'fgsm' is installed but disabled"):
        reg.get_manager().get_info("fgsm")
    res = _cli("info", "fgsm")
    assert res.exit_code == 1 and "disabled" in res.stderr
