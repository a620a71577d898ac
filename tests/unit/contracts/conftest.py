"""The `contracts` fixture: a topology file's contract problems (protos compiled into the
test's cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_flow.contracts.check import check_contracts
from cqrs_flow.errors import Problem
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology


@pytest.fixture
def contracts(proto_cache):
    """topology file -> the contract problems of it (protos compiled into the test's cache)."""

    def run(path: Path) -> list[Problem]:
        topology = load_topology(path)
        protos = compile_protos(list(topology.protos), topology.root)
        return check_contracts(topology, protos)

    return run
