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
    except UnsupportedLayerError:
        pass  # a rule method may refuse the layer, but must still leave everything as it was
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


def test_5_evaluate_robustness_leaves_model_and_input_bit_identical():
    model, (x, y) = _hostile_model(), _batch(16)
    snap, x0 = ModelSnapshot.take(model), x.clone()
    res = _quiet(toolkit_core.evaluate_robustness, model, (x, y), attacks=[("fgsm", {"eps": 0.1})])
    assert 0 <= res.worst_case_accuracy <= res.clean_accuracy <= 1
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


def test_4_resuming_fit_from_a_truncated_checkpoint_says_so(tmp_path):
    from toolkit_core.training import fit
    from toolkit_core.training.checkpoint import CheckpointError

    data = _fit_data(64)
    fit(_fit_model(), data, epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        fit(_fit_model(), data, epochs=1, batch_size=32, progress=False, checkpoint_dir=tmp_path, resume=True)
