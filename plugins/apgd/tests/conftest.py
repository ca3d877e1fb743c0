"""Shared fixtures: a small digits CNN trained once per process (cached), single-threaded torch."""

import pytest

from toolkit_core.data import load_digits
from toolkit_core.robustness import digits_model
from toolkit_core.threads import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run ~10x faster on one thread on a shared CPU; restore the setting afterwards."""
    with torch_threads(1):
        yield


@pytest.fixture
def digits():
    """(trained model in eval mode, 120 test images in [0, 1], their labels)."""
    model = digits_model()
    x, y = load_digits(16, "test").tensors
    return model, x[:120], y[:120]
