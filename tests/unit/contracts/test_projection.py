"""The projection's contract: what its plugin handles, what it writes, each problem at its key."""

from __future__ import annotations

import shutil
import sys
import uuid

import pytest

from cqrs_flow.contracts.check import check_contracts
from cqrs_flow.contracts.projection import projection_plan, source_store
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.problems import Problems

from ..helpers import ROOT


@pytest.fixture
def library(tmp_path, proto_cache):
    """A copy of examples/library whose projection plugin a test writes: (write, check)."""
    copy = tmp_path / "library"
    shutil.copytree(ROOT / "examples" / "library", copy)
    module = f"handlers_{uuid.uuid4().hex[:8]}"  # a module name of its own: imports are cached
    text = (copy / "topology.yaml").read_text()
    (copy / "topology.yaml").write_text(
        text.replace("plugin: projections.LoansPerMember", f"plugin: {module}.Handlers")
    )

    def check(source: str, edits: tuple[tuple[str, str], ...] = ()):
        (copy / f"{module}.py").write_text(
            "from cqrs_flow.plugins import ProjectionPlugin\n\n" + source
        )
        text = (copy / "topology.yaml").read_text()
        for old, new in edits:
            assert old in text, old
            text = text.replace(old, new)
        (copy / "topology.yaml").write_text(text)
        topology = load_topology(copy / "topology.yaml")
        protos = compile_protos(list(topology.protos), topology.root)
        problems = check_contracts(topology, protos)
        return topology, protos, {p.path: p.message for p in problems}

    yield check
    sys.modules.pop(module, None)


LOANS = "class Handlers(ProjectionPlugin):\n    async def on_Loan_insert(self, event, model): ...\n"


def test_the_example_has_a_plan(library):
    topology, protos, problems = library(LOANS)
    assert problems == {}
    plan = projection_plan(topology, topology.nodes["loans"], protos, Problems(None))
    assert plan is not None and plan.follows == ("Loan",)
    assert plan.entity.name == "MemberLoans" and plan.store.name == plan.source.name == "store"
    assert source_store(topology, topology.nodes["loans"]) is plan.source


def test_a_handler_of_an_entity_the_followed_store_lacks_is_named(library):
    _, _, problems = library(
        "class Handlers(ProjectionPlugin):\n    async def on_Lon_insert(self, event, model): ...\n"
    )
    assert (
        "handles changes of 'Lon', which store 'store' does not hold; did you mean 'Loan'?"
        in (problems["nodes.loans.plugin"])
    )


def test_a_projection_may_not_follow_its_own_read_model(library):
    _, _, problems = library(LOANS + "    async def on_MemberLoans(self, event, model): ...\n")
    assert (
        "its own read model: it would follow its own writes for ever"
        in (problems["nodes.loans.plugin"])
    )


def test_a_plugin_without_handlers_is_refused(library):
    _, _, problems = library("class Handlers(ProjectionPlugin):\n    pass\n")
    assert "has no handler: name its methods on_<Entity>_<op>" in problems["nodes.loans.plugin"]


def test_a_read_model_no_command_may_write(library):
    _, _, problems = library(
        LOANS,
        (("        RemoveLoan: Loan.delete", "        RemoveLoan: MemberLoans.delete"),),
    )
    assert problems["nodes.store.write.rpcs.RemoveLoan"] == (
        "RemoveLoan (delete) writes MemberLoans, the read model of projection 'loans', which "
        "only the projection writes"
    )


def test_a_plugin_of_another_kind_is_named_at_its_key(library):
    _, _, problems = library(
        "from cqrs_flow.plugins import ReaderPlugin\nclass Handlers(ReaderPlugin):\n    pass\n"
    )
    assert (
        "is a reader plugin; a projection node takes ProjectionPlugin"
        in (problems["nodes.loans.plugin"])
    )
