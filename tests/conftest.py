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
