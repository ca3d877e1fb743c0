"""pytest fixtures for torchtrust and its plugins, published once as the pytest plugin ``torchtrust``
(entry point group ``pytest11`` of the ``torchtrust`` distribution): every test suite run where
torchtrust is installed can use them without a ``conftest.py``.

* ``one_thread``: torch runs single-threaded for the test (tiny models are about 10x faster on a
  shared CPU); the thread count is restored afterwards. Request it by name, or make it apply to every
  test of a suite with the ini option ``torchtrust_one_thread = true`` (torchtrust's own
  ``pyproject.toml`` sets it; without it, nothing changes for other projects' tests).
* ``digits``: a trained :func:`toolkit_core.models.digits_model` (cached per process) with 120 test
  images in [0, 1] and their labels.

Importing this module is cheap (torch is imported when a fixture runs), so the plugin does not slow
down pytest's start.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("torchtrust_one_thread", "run every test with one torch thread (torchtrust's one_thread)",
                  type="bool", default=False)


@pytest.fixture
def one_thread():
    """torch single-threaded for this test; the previous thread count is restored afterwards."""
    from .threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(autouse=True)
def _torchtrust_one_thread_everywhere(request: pytest.FixtureRequest):
    """``one_thread`` for every test when the ini option ``torchtrust_one_thread`` is true."""
    if request.config.getini("torchtrust_one_thread"):
        request.getfixturevalue("one_thread")
    yield


@pytest.fixture
def digits():
    """``(model, x, y)``: the cached trained digits CNN, 120 test images in [0, 1] and their labels."""
    from .data import load_digits
    from .models import digits_model

    model = digits_model()
    x, y = load_digits(16, "test").tensors
    return model, x[:120], y[:120]
