"""Shared fixtures: a trained digits CNN (``digits``) and single-threaded torch for every test."""

from toolkit_core.fixtures import digits, one_thread  # noqa: F401
