"""The model comes back unchanged: modes, flags and hooks restored, also after an exception."""

from __future__ import annotations

import pytest
import torch

from toolkit_core.models import DigitsCNN
from toolkit_core.modelstate import ModelSnapshot, preserved


def test_restores_everything_after_an_exception():
    model = DigitsCNN().train()
    model.head.weight.requires_grad_(False)
    model.fc.eval()
    snap = ModelSnapshot.take(model)
    with pytest.raises(RuntimeError, match="inside"):
        with preserved(model, mode=False, freeze=True):
            assert not model.training and not any(p.requires_grad for p in model.parameters())
            model.fc.register_forward_hook(lambda *a: None)
            model.fc.weight.requires_grad_(True)
            model.fc.weight.register_hook(lambda g: g)
            model.features[0].register_full_backward_hook(lambda *a: None)
            raise RuntimeError("inside")
    assert snap.differences(model) == []
    assert model.training and not model.fc.training and not model.head.weight.requires_grad


def test_snapshot_detects_each_kind_of_change():
    model = DigitsCNN()
    snap = ModelSnapshot.take(model)
    with torch.no_grad():
        model.fc.bias[0] += 1
    model.head.weight.requires_grad_(False)
    model.eval()
    model.head.register_forward_pre_hook(lambda *a: None)
    diffs = "\n".join(snap.differences(model))
    assert "tensor 'fc.bias' changed" in diffs and "requires_grad of 'head.weight'" in diffs
    assert "training mode of ''" in diffs and "hooks of" in diffs
    with pytest.raises(AssertionError, match="model changed"):
        snap.assert_unchanged(model)


def test_rejects_non_modules():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        with preserved(lambda x: x):
            pass
