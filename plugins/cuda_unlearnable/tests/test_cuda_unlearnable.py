"""Numbers of CUDA: the filters, the convolution against a per-image loop, and the poisoning effect."""

import pytest
import torch
import torch.nn.functional as F
from torchtrust_cuda_unlearnable import CUDAUnlearnableDigits, apply_filters, class_filters

from toolkit_core.catalog import get_info
from toolkit_core.testing import check_method


def test_contract_and_provider():
    check_method("cuda_unlearnable")
    assert get_info("cuda_unlearnable").provider == "torchtrust-cuda-unlearnable"


def test_filters_have_one_unit_entry_and_blur_entries():
    w = class_filters(10, 3, 0.3, seed=0)
    assert w.shape == (10, 3, 3)
    assert bool(((w == 1).sum((1, 2)) == 1).all())  # exactly one entry set to 1 per class
    rest = w[w != 1]
    assert float(rest.min()) >= 0 and float(rest.max()) < 0.3
    assert torch.equal(w, class_filters(10, 3, 0.3, seed=0)) and not torch.equal(w, class_filters(10, 3, 0.3, seed=1))
    with pytest.raises(ValueError, match="odd"):
        class_filters(10, 4)


def test_batched_application_equals_a_per_image_convolution():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (12,), generator=g)
    w = class_filters(5, 3, 0.5, seed=2)
    out = apply_filters(x, y, w)
    for i in range(12):
        ref = F.conv2d(x[i : i + 1], w[y[i]].expand(3, 1, 3, 3), padding=1, groups=3)
        torch.testing.assert_close(out[i : i + 1], ref / ref.max())
    assert float(out.amax((1, 2, 3)).min()) == pytest.approx(1.0)
    assert float(out.min()) >= 0


def test_only_training_images_are_poisoned():
    src = CUDAUnlearnableDigits()
    from toolkit_core.data import load_digits

    xtr, ytr = src.tensors("train")
    xte, _ = src.tensors("test")
    clean_tr, _ = load_digits(16, "train", seed=0).tensors
    clean_te, _ = load_digits(16, "test", seed=0).tensors
    assert torch.equal(xte, clean_te)
    torch.testing.assert_close(xtr, apply_filters(clean_tr, ytr, src.filters))
    half = CUDAUnlearnableDigits(poison_fraction=0.5).tensors("train")[0]
    same = (half == clean_tr).flatten(1).all(1).float().mean()
    assert 0.4 < float(same) < 0.6


@pytest.mark.slow
def test_training_on_the_poisoned_digits_costs_clean_test_accuracy():
    """A DigitsCNN trained on CUDA digits loses clean test accuracy against one trained on clean digits.
    (On these 16x16 digits the loss is partial: 0.96 -> ~0.88; see docs/results/seed-pool.md.)"""
    from toolkit_core.data import load_digits
    from toolkit_core.models import DigitsCNN

    def train(x, y):
        torch.manual_seed(0)
        m = DigitsCNN(width=8, hidden=32)
        opt = torch.optim.Adam(m.parameters(), 3e-3)
        for _ in range(15):
            perm = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = perm[i : i + 64]
                loss = F.cross_entropy(m(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return m.eval()

    xte, yte = load_digits(16, "test", seed=0).tensors
    clean = train(*load_digits(16, "train", seed=0).tensors)
    poisoned = train(*CUDAUnlearnableDigits().tensors("train"))
    with torch.no_grad():
        acc_clean = float((clean(xte).argmax(1) == yte).float().mean())
        acc_poisoned = float((poisoned(xte).argmax(1) == yte).float().mean())
    assert acc_clean > 0.93
    assert acc_poisoned < acc_clean - 0.05


def test_reference_is_the_clean_digits_and_the_experiment_budget_is_declared():
    from toolkit_core.data import load_digits
    from toolkit_core.methods import Scale

    source = CUDAUnlearnableDigits(key=3)
    ref = source.reference()
    x, y = ref.tensors("train")
    x0, y0 = load_digits(16, "train", seed=0).tensors
    assert torch.equal(x, x0) and torch.equal(y, y0)  # poison_fraction 0: no image filtered
    assert not torch.equal(source.tensors("train")[0], x0)
    assert torch.equal(ref.tensors("test")[0], source.tensors("test")[0])  # one clean test split for both
    full, quick = (CUDAUnlearnableDigits.experiment_training(Scale(quick=q)) for q in (False, True))
    assert (full["epochs"], quick["epochs"]) == (15, 5)
