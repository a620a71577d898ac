"""Shared fixtures of the unit tests: the shipped example, edited copies of it, compiled protos."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.protobuf.compiler import ProtoSet, compile_protos
from cqrs_flow.topology import Topology, load_topology, parse_topology

from .helpers import ROOT, SHIPPED, Edit, apply_edits, line_of  # noqa: F401


@pytest.fixture(scope="session")
def shipped_text() -> str:
    return SHIPPED.read_text(encoding="utf-8")


@pytest.fixture
def edit(shipped_text: str) -> Callable[..., str]:
    """edit((old, new), ...) -> the shipped topology text with the edits applied."""

    def make(*edits: Edit, text: str | None = None) -> str:
        return apply_edits(shipped_text if text is None else text, edits)

    return make


@pytest.fixture
def parse() -> Callable[[str], Topology]:
    """Parse topology text as if it were the shipped file (so proto/ and schema/ resolve)."""

    def run(text: str) -> Topology:
        return parse_topology(text, SHIPPED)

    return run


@pytest.fixture
def problems_of() -> Callable[[str], list[Problem]]:
    """The problems of topology text that must not load."""

    def run(text: str) -> list[Problem]:
        with pytest.raises(TopologyError) as exc:
            parse_topology(text, SHIPPED)
        return exc.value.problems

    return run


@pytest.fixture
def proto_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point compile_protos' cache ($CQRS_FLOW_CACHE) at a fresh directory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CQRS_FLOW_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def shipped_protos(tmp_path_factory: pytest.TempPathFactory) -> ProtoSet:
    """The shipped protos, compiled once per session into a private cache."""
    topology = load_topology(SHIPPED)
    return compile_protos(
        list(topology.protos), topology.root, cache=tmp_path_factory.mktemp("protos")
    )


@pytest.fixture
def shipped() -> Topology:
    return load_topology(SHIPPED)


@pytest.fixture
def make_project(tmp_path: Path, shipped_text: str) -> Callable[..., Path]:
    """Write an edited copy of the shipped project (topology.yaml, proto/, schema/) into tmp_path;
    returns the topology file. Each call makes a new directory."""
    count = 0

    def make(
        yaml: tuple[Edit, ...] | list[Edit] = (),
        proto: tuple[Edit, ...] | list[Edit] = (),
        schema: tuple[Edit, ...] | list[Edit] = (),
    ) -> Path:
        nonlocal count
        count += 1
        project = tmp_path / f"project{count}"
        shutil.copytree(ROOT / "proto", project / "proto")
        shutil.copytree(ROOT / "schema", project / "schema")
        (project / "topology.yaml").write_text(apply_edits(shipped_text, yaml), encoding="utf-8")
        for relative, edits in (
            ("proto/contacts.proto", proto),
            ("schema/contacts.graphql", schema),
        ):
            if edits:
                target = project / relative
                target.write_text(
                    apply_edits(target.read_text(encoding="utf-8"), edits), encoding="utf-8"
                )
        return project / "topology.yaml"

    return make


@pytest.fixture
def restore_logging():
    """`cqrs-flow node` reconfigures the root logger (onto the CliRunner's stream); undo it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {
        name: logging.getLogger(name).level
        for name in ("amqtt", "transitions", "gmqtt", "tartiflette", "aiohttp.access")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
