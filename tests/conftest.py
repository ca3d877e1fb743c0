"""Shared fixtures for the core tests."""

from __future__ import annotations

import pytest

import registry


@pytest.fixture
def fresh_registry():
    """Rediscover plugins for the duration of a test, then restore the process-wide manager."""
    old = registry.set_manager(None)
    try:
        yield
    finally:
        registry.set_manager(old)


@pytest.fixture(autouse=True, scope="session")
def _catalog_cache_in_a_temporary_folder(tmp_path_factory):
    """`torchtrust list/info/plugins` keep a catalog cache; tests never write to the user's cache folder."""
    import os

    old = os.environ.get("TORCHTRUST_CACHE_DIR")
    os.environ["TORCHTRUST_CACHE_DIR"] = str(tmp_path_factory.mktemp("catalog-cache"))
    yield
    if old is None:
        os.environ.pop("TORCHTRUST_CACHE_DIR", None)
    else:
        os.environ["TORCHTRUST_CACHE_DIR"] = old
