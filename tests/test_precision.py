"""Mixed precision (toolkit_core.precision): bf16 on CPU close to fp32, attribution always float32.

Numbers (digits 8x8, DigitsCNN width 8 / hidden 32, Adam 3e-3, 10 epochs, seeds 0-2, 1 thread):
test accuracy fp32 / bf16 = 0.9178 / 0.9178, 0.9422 / 0.9489, 0.9289 / 0.9222 -- at most 0.007
apart, while fp32 itself moves by 0.024 between seeds. The tests allow 0.03. On the seed-0 fp32
model, clean / FGSM / PGD-10 accuracy at eps 0.1 is 0.918 / 0.364 / 0.329 in fp32 and
0.920 / 0.362 / 0.318 under bf16 autocast (at most 0.011 apart).
"""

from __future__ import annotations

import pytest
import torch

import toolkit_core as tt
from toolkit_core import precision as amp
from toolkit_core.data import digits_loaders
from toolkit_core.models import DigitsCNN
from toolkit_core.modelstate import ModelSnapshot

TOLERANCE = 0.03  # accuracy, bf16 vs fp32 on the same seed


def _train(precision: str, seed: int = 0, epochs: int = 10):
    train, test = digits_loaders(size=8, batch_size=64, seed=seed)
    torch.manual_seed(seed)
    model = DigitsCNN(size=8, width=8, hidden=32)
    history = tt.fit(model, train, epochs=epochs, seed=seed, lr=3e-3, progress=False, precision=precision,
                     eval_data=test)
    return model.eval(), history, test


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return {p: _train(p) for p in ("fp32", "bf16")}


def test_names_aliases_and_refusals():
    assert amp.check_precision(None) == "fp32"
    assert amp.check_precision("BF16") == amp.check_precision("bfloat16") == "bf16"
    assert amp.check_precision("fp16", "cuda") == "fp16"
    assert amp.low_precision_dtype("fp32") is None and amp.low_precision_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="'fp32', 'bf16', 'fp16'"):
        amp.check_precision("fp8")
    with pytest.raises(ValueError, match="needs a CUDA device.*use precision 'bf16' on a CPU"):
        amp.check_precision("fp16", "cpu")
    assert amp.grad_scaler("bf16", "cpu") is None and amp.grad_scaler("fp32", "cuda") is None


def test_fp16_training_on_cpu_is_refused_and_leaves_the_model_alone():
    model = DigitsCNN(size=8, width=4, hidden=16)
    snap = ModelSnapshot.take(model)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"):
        tt.fit(model, (x, y), epochs=1, progress=False, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        tt.fit(model, (x, y), epochs=1, progress=False, precision="fp8")
    snap.assert_unchanged(model)
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"):
        tt.evaluate_robustness(model.eval(), (x, y), attacks=["fgsm"], precision="fp16")


def test_bf16_training_reaches_fp32_accuracy_and_keeps_float32_weights(trained):
    acc = {p: h.epochs[-1]["eval_clean_acc"] for p, (_, h, _) in trained.items()}
    assert acc["fp32"] > 0.85  # it learned
    assert abs(acc["bf16"] - acc["fp32"]) <= TOLERANCE, acc
    model, history, _ = trained["bf16"]
    assert history.meta["precision"] == "bf16"
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float32}
    # the two runs are different computations: bf16 really ran (weights differ, not bit-equal)
    a, b = trained["fp32"][0].state_dict(), model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_bf16_attack_accuracy_close_to_fp32_and_the_model_comes_back_unchanged(trained):
    model, _, test = trained["fp32"]
    attacks = {"fgsm": tt.create("fgsm", eps=0.1), "pgd": tt.create("pgd", eps=0.1, alpha=0.025, steps=10)}
    snap = ModelSnapshot.take(model)
    res = {p: tt.evaluate_robustness(model, test, attacks=attacks, precision=p, checks=False) for p in ("fp32", "bf16")}
    snap.assert_unchanged(model)  # weights, buffers, dtypes, flags, modes, hooks
    assert abs(res["bf16"].clean_accuracy - res["fp32"].clean_accuracy) <= TOLERANCE
    for k in attacks:
        assert res["fp32"].accuracy[k] < res["fp32"].clean_accuracy - 0.1  # the attack bites
        assert abs(res["bf16"].accuracy[k] - res["fp32"].accuracy[k]) <= TOLERANCE, (k, res)


def test_attack_under_autocast_keeps_the_perturbation_float32_within_eps(trained):
    model, _, test = trained["fp32"]
    x, y = next(iter(test))
    x, y = x[:32], y[:32]
    pgd = tt.create("pgd", eps=0.1, alpha=0.025, steps=5)
    with amp.autocast("bf16", "cpu"):
        x_adv = pgd(model, x, y)
        logits = amp.Float32Logits(model)(x.requires_grad_())
        (grad,) = torch.autograd.grad(logits.logsumexp(1).sum(), x)
        inner = model(x)
    x.requires_grad_(False)
    assert inner.dtype == torch.bfloat16  # autocast really was on
    assert x_adv.dtype == logits.dtype == grad.dtype == torch.float32
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6 and 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    assert float((x_adv - x).abs().max()) > 0.05


@pytest.mark.parametrize("method", ["lrp", "gradient", "integrated_gradients"])
def test_attribution_maps_are_bit_identical_whatever_the_precision(trained, method):
    model, _, test = trained["fp32"]
    x = next(iter(test))[0][:8]
    snap = ModelSnapshot.take(model)
    ref = tt.attribute(model, x, method=method)
    for p in ("bf16",):
        with amp.autocast(p, "cpu"):
            assert model(x).dtype == torch.bfloat16
            got = tt.attribute(model, x, method=method)
        assert got.dtype == torch.float32 and torch.equal(got, ref), (method, float((got - ref).abs().max()))
    snap.assert_unchanged(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a gradient scaler needs CUDA (none here)")
def test_fp16_training_on_cuda_uses_a_scaler_and_learns():
    train, test = digits_loaders(size=8, batch_size=64, seed=0)
    torch.manual_seed(0)
    model = DigitsCNN(size=8, width=8, hidden=32)
    h = tt.fit(model, train, epochs=10, seed=0, lr=3e-3, progress=False, precision="fp16", eval_data=test,
               device="cuda")
    assert h.epochs[-1]["eval_clean_acc"] > 0.85
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float32}
