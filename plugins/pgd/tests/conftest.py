"""Shared fixtures: a small digits CNN trained once per process (cached), single-threaded torch."""

import pytest
import torch

from toolkit_core.data import load_digits
from toolkit_core.robustness import digits_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run ~10x faster on one thread on a shared CPU; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def digits():
    """(trained model in eval mode, 120 test images in [0, 1], their labels)."""
    model = digits_model()
    x, y = load_digits(16, "test").tensors
    return model, x[:120], y[:120]
