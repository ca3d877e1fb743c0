"""evaluate_robustness: numbers equal a direct computation; worst case; warnings; streaming; JSON.

Also the torchvision loaders of toolkit_core.datasets (no download: missing files, and a tiny fake MNIST).
"""

import json
import struct
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import toolkit_core as tt
from toolkit_core.data import load_digits
from toolkit_core.models import digits_model
from toolkit_core.robustness import RobustnessResult
from toolkit_core.testing import ModelSnapshot


@pytest.fixture
def setup():
    x, y = load_digits(16, "test").tensors
    return digits_model(), x[:100], y[:100]


def _correct(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) == y


def test_numbers_equal_a_direct_computation(setup):
    model, x, y = setup
    fgsm = tt.create("fgsm", eps=0.08)
    pgd = tt.create("pgd", eps=0.08, alpha=0.02, steps=5, random_start=False)
    res = tt.evaluate_robustness(model, (x, y), attacks=[fgsm, pgd], batch_size=1000)
    clean = _correct(model, x, y)
    idx = clean.nonzero().flatten()
    expected = {}
    for name, attack in (("fgsm", fgsm), ("pgd", pgd)):
        surv = torch.zeros_like(clean)
        surv[idx] = _correct(model, attack(model, x[idx], y[idx]), y[idx])
        expected[name] = surv
        assert torch.equal(res.robust[name], surv)
        assert res.accuracy[name] == pytest.approx(float(surv.float().mean()))
    assert res.n == 100
    assert res.clean_accuracy == pytest.approx(float(clean.float().mean()))
    worst = clean & expected["fgsm"] & expected["pgd"]
    assert torch.equal(res.worst_case, worst)
    assert res.worst_case_accuracy == pytest.approx(float(worst.float().mean()))
    assert res.worst_case_accuracy <= min(res.accuracy.values()) <= res.clean_accuracy
    assert res.accuracy["pgd"] < res.clean_accuracy - 0.2


def test_eps_zero_equals_clean_accuracy(setup):
    model, x, y = setup
    attacks = [("pgd", {"eps": 0.0, "steps": 2}), ("apgd", {"eps": 0.0, "steps": 2})]
    res = tt.evaluate_robustness(model, (x, y), attacks=attacks)
    assert res.accuracy["pgd"] == res.clean_accuracy
    assert res.accuracy["apgd"] == res.clean_accuracy
    assert res.worst_case_accuracy == res.clean_accuracy


def test_streaming_matches_one_batch_and_limit(setup):
    model, x, y = setup
    attacks = {"fgsm": "fgsm", "pgd-nors": tt.create("pgd", steps=3, random_start=False)}
    whole = tt.evaluate_robustness(model, (x, y), attacks=attacks, batch_size=1000)
    loader = DataLoader(TensorDataset(x, y), batch_size=17)
    streamed = tt.evaluate_robustness(model, loader, attacks=attacks)
    assert torch.equal(whole.clean, streamed.clean)
    for k in attacks:
        assert torch.equal(whole.robust[k], streamed.robust[k])
    before = torch.get_num_threads()
    part = tt.evaluate_robustness(model, loader, attacks=["fgsm"], limit=40, num_threads=2)
    assert torch.get_num_threads() == before
    assert part.n == 40
    assert torch.equal(part.clean, whole.clean[:40])


def test_result_prints_and_serializes(setup):
    model, x, y = setup
    attacks = ["fgsm", ("pgd", {"steps": 2, "seed": 0}), ("pgd", {"steps": 3, "seed": 0})]
    res = tt.evaluate_robustness(model, (x[:30], y[:30]), attacks=attacks)
    assert isinstance(res, RobustnessResult)
    assert list(res.accuracy) == ["fgsm", "pgd", "pgd(steps=3, seed=0)"]  # duplicate names labelled by params
    d = json.loads(res.to_json())
    assert d["n"] == 30 and d["clean_accuracy"] == pytest.approx(res.clean_accuracy)
    assert d["attacks"]["pgd"]["params"]["params"]["steps"] == 2
    assert d["worst_case_accuracy"] == pytest.approx(res.worst_case_accuracy)
    pp = res.to_dict(per_point=True)["per_point"]
    assert pp["worst_case"] == res.worst_case.tolist() and len(pp["clean"]) == 30
    text = str(res)
    assert f"{res.clean_accuracy:.4f}" in text and "worst case" in text and "fgsm" in text
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(res)
    assert f"{res.worst_case_accuracy:.4f}" in console.export_text()


def test_warns_in_train_mode_and_restores_it(setup):
    model, x, y = setup
    model.train()
    snap = ModelSnapshot.take(model)
    with pytest.warns(UserWarning, match="train mode"):
        res = tt.evaluate_robustness(model, (x[:20], y[:20]), attacks=["fgsm"])
    snap.assert_unchanged(model)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = tt.evaluate_robustness(model, (x[:20], y[:20]), attacks=["fgsm"])
    assert torch.equal(ref.clean, res.clean)  # evaluated in eval mode either way


class _Noisy(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) + torch.randn(x.shape[0], 10)


def test_warns_on_random_forward(setup):
    model, x, y = setup
    with pytest.warns(RuntimeWarning, match="random"):
        tt.evaluate_robustness(_Noisy(model).eval(), (x[:10], y[:10]), attacks=["fgsm"])


def test_bad_arguments(setup):
    model, x, y = setup
    with pytest.raises(TypeError, match="attacks must be"):
        tt.evaluate_robustness(model, (x, y), attacks=[42])
    with pytest.raises(TypeError, match="model"):
        tt.evaluate_robustness("model", (x, y))
    with pytest.raises(ValueError, match="limit"):
        tt.evaluate_robustness(model, (x, y), limit=0)
    with pytest.raises(ValueError, match="num_threads"):
        tt.evaluate_robustness(model, (x, y), num_threads=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tt.evaluate_robustness(model, (x * 3, y), attacks=["fgsm"])


# --------------------------------------------------------------------------- datasets


def test_missing_datasets_raise_without_downloading(tmp_path):
    from toolkit_core.datasets import cifar10, mnist

    with pytest.raises(FileNotFoundError, match="download=True"):
        mnist(tmp_path, train=False)
    with pytest.raises(FileNotFoundError, match="download=True"):
        cifar10(tmp_path, train=True)
    assert not any(tmp_path.rglob("*.gz")) and not any(tmp_path.rglob("*.tar.gz"))


def _idx(path, magic, dims, data: bytes):
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + data)


def test_mnist_reads_local_files_into_unit_range(tmp_path):
    from toolkit_core.datasets import mnist

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (5, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
    for prefix in ("train", "t10k"):
        _idx(raw / f"{prefix}-images-idx3-ubyte", 0x803, (5, 28, 28), imgs.numpy().tobytes())
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 0x801, (5,), labels.numpy().tobytes())
    ds = mnist(tmp_path, train=True)
    x, y = ds.tensors
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0] * 255, imgs.float())
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert y.tolist() == [3, 1, 4, 1, 5] and y.dtype == torch.long
