"""Fixtures of the end-to-end tests; the helpers they use are in system.py."""

from __future__ import annotations

import pytest

from system import System, prepare


def pytest_collection_modifyitems(items):
    """Everything here starts real processes: `pytest -m "not e2e"` runs just the fast tier."""
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def contacts(tmp_path_factory) -> System:
    """The contacts system with a 0.5 s write delay, shared by the tests of a module."""
    system = System(prepare("contacts_fast.yaml", tmp_path_factory.mktemp("contacts"))).start()
    yield system
    system.stop()
