"""Embedded data: shapes, ranges, and the PacGAN mixtures exactly as specified."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit_core import data


def test_digits_splits_and_ranges():
    train, test = data.load_digits(16, "train"), data.load_digits(16, "test")
    assert len(train) + len(test) == 1797 and len(test) == 450
    x, y = train.tensors
    assert x.shape[1:] == (1, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(y.tolist()) == set(range(10))
    native = data.load_digits(8, "all").tensors[0]
    assert native.shape == (1797, 1, 8, 8) and float(native.max()) == 1.0
    with pytest.raises(ValueError, match="split"):
        data.load_digits(16, "val")


def test_mixtures_follow_the_pacgan_protocol():
    assert data.RING_MODES.shape == (8, 2) and data.GRID_MODES.shape == (25, 2)
    angles = torch.atan2(data.RING_MODES[:, 1], data.RING_MODES[:, 0]) % (2 * math.pi)
    torch.testing.assert_close(angles.sort().values, torch.arange(8) * 2 * math.pi / 8, atol=1e-6, rtol=0)
    assert sorted({int(v) for v in data.GRID_MODES.flatten().tolist()}) == [-4, -2, 0, 2, 4]
    x, labels = data.ring8(4000, seed=1)
    spread = (x - data.RING_MODES[labels]).std()
    assert abs(float(spread) - data.RING_STD) < 0.001
    xg, lg = data.grid25(4000, seed=1)
    assert abs(float((xg - data.GRID_MODES[lg]).std()) - data.GRID_STD) < 0.005


def test_photos():
    p = data.load_photos(64)
    assert p.shape == (3, 3, 64, 64) and 0 <= float(p.min()) and float(p.max()) <= 1 and p.std() > 0.1
    with pytest.raises(ValueError, match="unknown photo"):
        data.load_photos(64, ("lena",))


def test_iterate_batches():
    x, y = torch.rand(10, 2), torch.arange(10)
    batches = list(data.iterate_batches((x, y), batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    with pytest.raises(TypeError, match="DataLoader"):
        list(data.iterate_batches([1, 2, 3]))
