"""Repository-wide pytest options.

Tests marked ``@pytest.mark.slow`` (model zoos, multi-seed studies, benchmark-style checks) are
skipped unless ``--run-slow`` is given or ``TORCHTRUST_RUN_SLOW=1`` is set, so the default run (CI)
keeps a representative subset and stays short. Run everything with ``python -m pytest --run-slow``.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("TORCHTRUST_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or TORCHTRUST_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
