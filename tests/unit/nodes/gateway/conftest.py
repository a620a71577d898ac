"""Fixtures of the gateway's unit tests."""

from __future__ import annotations

import pytest

from .live_gateway import Library, load_library


@pytest.fixture(scope="module")
def library() -> Library:
    """The library example's topology, protos and gateway plan (live subscriptions' tests)."""
    return load_library()
