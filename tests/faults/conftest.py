"""The fault-injection suite (docs/RELIABILITY.md): `pytest -m faults` runs it alone.

Its helpers (checker.py, workload.py, nemesis.py, cluster.py) are imported by name, as the
end-to-end tests' are; the end-to-end helpers (system.py, hosts.py) and bench/ are on the path
too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))  # bench/


def pytest_collection_modifyitems(items):
    """The nemesis runs start real processes: they are end-to-end tests as well."""
    for item in items:
        if "/faults/" in str(item.fspath) and item.get_closest_marker("faults"):
            item.add_marker(pytest.mark.e2e)
