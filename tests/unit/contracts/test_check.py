"""check_contracts: every node's contract checked, every problem kept; protos compiled once."""

from __future__ import annotations

import pytest

from cqrs_flow.errors import ProtoError
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology

from ..helpers import SHIPPED


def test_shipped_topology_has_no_contract_problems(contracts, proto_cache):
    assert contracts(SHIPPED) == []
    assert list((proto_cache / "protos").glob("*.pb")), (
        "compile_protos caches under $CQRS_FLOW_CACHE"
    )


def test_an_unedited_copy_has_no_contract_problems(contracts, make_project):
    assert contracts(make_project()) == []


def test_compiled_protos_are_cached(proto_cache):
    topology = load_topology(SHIPPED)
    first = compile_protos(list(topology.protos), topology.root)
    cached = list((proto_cache / "protos").glob("*.pb"))
    assert len(cached) == 1 and first.path == cached[0]
    written = first.path.stat().st_mtime_ns
    again = compile_protos(list(topology.protos), topology.root)
    assert again.path == first.path
    assert first.path.stat().st_mtime_ns == written  # not compiled again
    assert set(again.message_descriptor("contacts.Contact").fields_by_name) == {
        "id",
        "name",
        "last_updated",
    }


def test_changing_a_proto_recompiles(make_project, proto_cache):
    topology = load_topology(make_project())
    before = compile_protos(list(topology.protos), topology.root)
    proto = topology.root / topology.protos[0]
    proto.write_text(
        proto.read_text().replace(
            "string last_updated = 3;", "string last_updated = 3;\n  int32 age = 4;"
        )
    )
    after = compile_protos(list(topology.protos), topology.root)
    assert after.path != before.path
    assert "age" in after.message_descriptor("contacts.Contact").fields_by_name
    assert len(list((proto_cache / "protos").glob("*.pb"))) == 2


def test_broken_proto_is_a_proto_error(make_project, proto_cache):
    path = make_project(proto=[("message Contact {", "message Contact {{")])
    topology = load_topology(path)
    with pytest.raises(ProtoError, match=r"protoc could not compile contacts\.proto"):
        compile_protos(list(topology.protos), topology.root)


def test_problems_of_different_nodes_are_all_reported(contracts, make_project):
    path = make_project(
        yaml=[
            ("GetContact: get", "GetContact: insert"),
            ("message: Queued to add", "message: Queued {nmae}"),
            ("timestamp: last_updated", "timestamp: updated"),
        ]
    )
    assert {p.path for p in contracts(path)} == {
        "nodes.store.read.rpcs.GetContact",
        "nodes.gateway.mutations.addContact.message",
        "nodes.store.timestamp",
    }
