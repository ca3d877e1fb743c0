"""Robust Weight Signatures: the patch is the formula, on a copy; coefficient 0 is the identity."""

from __future__ import annotations

import pytest
import torch
from torchtrust_rws import RobustWeightSignature, coefficient_sweep, layer_differences, shallow_layers

import toolkit_core as tt
from toolkit_core.modelstate import ModelSnapshot
from toolkit_core.testing import check_method, contract_model, digits_batch

LAYERS = ["features.0", "features.3", "fc", "head"]  # DigitsCNN's modules with parameters, shallow to deep


def test_contract():
    check_method("rws")


def _models():
    return contract_model(0), contract_model(1), contract_model(2)  # robust, standard, target: three inits


def test_coefficient_zero_is_the_model_bit_for_bit_and_nothing_is_modified():
    robust, standard, target = _models()
    target.train()
    snaps = [ModelSnapshot.take(m) for m in (robust, standard, target)]
    patch = tt.create("rws", layers=2).extract(robust, standard)
    zero = patch.apply(target, 0.0)
    assert zero is not target and zero.training  # a copy, flags and mode included
    for k, v in target.state_dict().items():
        assert torch.equal(zero.state_dict()[k], v), k
    patch.apply(target, 1.5)
    for m, s in zip((robust, standard, target), snaps):
        s.assert_unchanged(m)


def test_patch_is_the_formula_on_the_shallow_layers_only():
    robust, standard, target = _models()
    assert shallow_layers(target) == LAYERS
    for layers in (1, 2, 4):
        patch = RobustWeightSignature(layers=layers).extract(robust, standard)
        kept = LAYERS[:layers]
        assert sorted(patch.delta) == sorted(f"{m}.{p}" for m in kept for p in ("weight", "bias"))
        for c in (0.5, 1.0, -2.0):
            patched = dict(patch.apply(target, c).named_parameters())
            r, s, t = (dict(m.named_parameters()) for m in (robust, standard, target))
            for name, p in patched.items():
                if name.rsplit(".", 1)[0] in kept:  # theta' = theta + c (theta_robust - theta_standard)
                    torch.testing.assert_close(p, t[name] + c * (r[name] - s[name]), rtol=1e-6, atol=1e-7)
                    assert not torch.equal(p, t[name])
                else:
                    assert torch.equal(p, t[name]), name
    no_bias = RobustWeightSignature(layers=2, include_bias=False).extract(robust, standard)
    assert sorted(no_bias.delta) == ["features.0.weight", "features.3.weight"]
    named = RobustWeightSignature(modules=["fc"]).extract(robust, standard)
    assert sorted(named.delta) == ["fc.bias", "fc.weight"]
    n_fc = sum(p.numel() for p in target.fc.parameters())
    assert named.fraction(target) == n_fc / sum(p.numel() for p in target.parameters())


def test_own_signature_at_one_gives_the_robust_shallow_layers_and_is_linear_in_the_coefficient():
    robust, standard, target = _models()
    patch = RobustWeightSignature(layers=2).extract(robust, standard)
    own = dict(patch.apply(standard, 1.0).named_parameters())
    r, s = dict(robust.named_parameters()), dict(standard.named_parameters())
    for name, p in own.items():
        if name.startswith("features."):
            torch.testing.assert_close(p, r[name], rtol=0, atol=1e-6)  # s + (r - s) = r up to rounding
        else:
            assert torch.equal(p, s[name])
    everything = RobustWeightSignature(layers=len(LAYERS)).extract(robust, standard)
    x = digits_batch(16)[0]
    with torch.no_grad():
        torch.testing.assert_close(everything.apply(standard, 1.0)(x), robust(x), rtol=1e-5, atol=1e-5)
    # scaled, composed and taken off: apply(apply(t, a), b) = apply(t, a + b); apply(apply(t, c), -c) = t
    twice = dict(patch.apply(patch.apply(target, 0.75), 0.5).named_parameters())
    once = dict(patch.apply(target, 1.25).named_parameters())
    back = dict(patch.apply(patch.apply(target, 0.8), -0.8).named_parameters())
    t = dict(target.named_parameters())
    for name in t:
        torch.testing.assert_close(twice[name], once[name], rtol=0, atol=1e-6)
        torch.testing.assert_close(back[name], t[name], rtol=0, atol=1e-6)


def test_layer_differences_are_relative_norms():
    robust, standard, _ = _models()
    twin = contract_model(1)
    with torch.no_grad():
        twin.features[3].weight.mul_(1.5)  # only the second conv's weight differs: by half its norm
    diffs = layer_differences(twin, standard)
    w, b = standard.features[3].weight.detach(), standard.features[3].bias.detach()
    expected = float(0.5 * w.norm() / (w.norm() ** 2 + b.norm() ** 2).sqrt())
    assert diffs["features.3"] == pytest.approx(expected, rel=1e-6)
    assert [diffs[k] for k in ("features.0", "fc", "head")] == [0.0, 0.0, 0.0]
    assert all(v > 0 for v in layer_differences(robust, standard).values())


def test_errors_say_what_to_do():
    robust, standard, target = _models()
    with pytest.raises(RuntimeError, match="extract"):
        RobustWeightSignature().apply(target, 1.0)
    other = tt.create("rws").extract(robust, standard)
    from toolkit_core.models import DigitsCNN

    with pytest.raises(ValueError, match="architecture"):
        other.apply(DigitsCNN(size=16, width=8, hidden=16), 1.0)
    with pytest.raises(ValueError, match="architecture"):
        RobustWeightSignature().extract(DigitsCNN(size=16, width=8, hidden=16), standard)
    with pytest.raises(ValueError, match="features.9"):
        RobustWeightSignature(modules=["features.9"]).extract(robust, standard)
    with pytest.raises(ValueError, match="layers"):
        RobustWeightSignature(layers=0)


def test_coefficient_sweep_reports_the_patched_models_accuracy():
    robust, standard, target = _models()
    x, y = digits_batch(32)
    patch = RobustWeightSignature(layers=2).extract(robust, standard)
    flip = lambda m, x, y: x.flip(-1)  # noqa: E731 - a corruption that ignores the model
    rows = coefficient_sweep(patch, target, (x, y), [0.0, 1.0], flip)
    for row in rows:
        m = patch.apply(target, row["coefficient"]).eval()
        with torch.no_grad():
            assert row["clean_acc"] == float((m(x).argmax(1) == y).float().mean())
            assert row["robust_acc"] == float((m(x.flip(-1)).argmax(1) == y).float().mean())


@pytest.mark.slow
def test_noise_signature_transfers_to_another_standard_model_of_the_same_base():
    """Digits: a signature from a Gaussian-noise-trained model raises another standard model's accuracy on
    noisy digits at c = 1 (clean accuracy nearly kept), and transfers less to a model of another init."""
    import copy

    from toolkit_core.data import load_digits
    from toolkit_core.models import digits_model
    from toolkit_core.training import fit

    torch.set_num_threads(1)
    xtr, ytr = load_digits(16, "train", seed=0).tensors
    xte, yte = load_digits(16, "test", seed=0).tensors
    base = digits_model()

    def tune(seed, noise=0.0):
        model, x, y = copy.deepcopy(base).train(), xtr, ytr
        if noise:
            g = torch.Generator().manual_seed(seed)
            x, y = torch.cat([xtr, (xtr + noise * torch.randn(xtr.shape, generator=g)).clamp(0, 1)]), ytr.repeat(2)
        fit(model, (x, y), None, epochs=5, lr=1e-3, seed=seed, progress=False)
        return model.eval()

    standard, target, robust = tune(1), tune(2), tune(1, noise=0.3)
    noisy = (xte + 0.3 * torch.randn(xte.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    patch = RobustWeightSignature(layers=2).extract(robust, standard)
    t0, t1 = coefficient_sweep(patch, target, (xte, yte), [0.0, 1.0], lambda m, x, y: noisy)
    c0, c1 = coefficient_sweep(patch, digits_model(seed=5), (xte, yte), [0.0, 1.0], lambda m, x, y: noisy)
    assert t1["robust_acc"] >= t0["robust_acc"] + 0.015
    assert t1["clean_acc"] >= t0["clean_acc"] - 0.02
    assert t1["robust_acc"] - t0["robust_acc"] > c1["robust_acc"] - c0["robust_acc"]
