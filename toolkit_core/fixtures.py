"""pytest fixtures shared by plugin test suites; import them into a ``conftest.py``::

    from toolkit_core.fixtures import digits, one_thread  # noqa: F401

``one_thread`` (autouse once imported): torch runs single-threaded for each test, which makes tiny
models about 10x faster on a shared CPU; the thread count is restored afterwards. ``digits``: a
trained :func:`toolkit_core.models.digits_model` (cached per process) with 120 test images in
[0, 1] and their labels.
"""

from __future__ import annotations

import pytest

from .data import load_digits
from .models import digits_model
from .threads import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture
def digits():
    model = digits_model()
    x, y = load_digits(16, "test").tensors
    return model, x[:120], y[:120]
