"""graph: start batches, start order and cycles."""

from __future__ import annotations

from graphlib import CycleError
from pathlib import Path

import pytest

from cqrs_flow.topology import start_batches, start_order
from cqrs_flow.topology.graph import find_cycle
from cqrs_flow.topology.model import (
    Address,
    BrokerNode,
    Endpoint,
    GatewayNode,
    ReaderNode,
    StoreNode,
    Topology,
    WriterNode,
    frozen_map,
)


def topology_of(*nodes) -> Topology:
    return Topology(
        "t", Path("/nowhere/t.yaml"), (), frozen_map(), frozen_map({n.name: n for n in nodes})
    )


def bigger() -> Topology:
    """Two stores, each with its own reader and writer; two brokers; two gateways; listed out of
    order."""
    return topology_of(
        GatewayNode("g2", broker="b2", reader="r2", listen=Address("127.0.0.1", 8081)),
        WriterNode("w2", broker="b2", store=Endpoint("s2", "write")),
        ReaderNode("r1", store=Endpoint("s1", "read"), listen=Address("127.0.0.1", 50053)),
        GatewayNode("g1", broker="b1", reader="r1"),
        StoreNode("s2"),
        WriterNode("w1", broker="b1", store=Endpoint("s1", "write")),
        ReaderNode("r2", store=Endpoint("s2", "read"), listen=Address("127.0.0.1", 50063)),
        BrokerNode("b1"),
        StoreNode("s1"),
        BrokerNode("b2", listen=Address("127.0.0.1", 1884)),
        WriterNode("w3", broker="b1", store=Endpoint("s2", "write")),
    )


def test_shipped_start_batches(shipped):
    assert start_batches(shipped) == [["broker", "store"], ["reader", "writer"], ["gateway"]]
    assert start_order(shipped) == ["broker", "store", "reader", "writer", "gateway"]


def test_start_order_respects_every_dependency():
    topology = bigger()
    order = start_order(topology)
    assert sorted(order) == sorted(topology.nodes)
    for name, node in topology.nodes.items():
        for dependency in node.dependencies:
            assert order.index(dependency) < order.index(name), (
                f"{dependency} must start before {name}"
            )


def test_start_batches_of_a_bigger_topology():
    assert start_batches(bigger()) == [
        ["b1", "b2", "s1", "s2"],
        ["r1", "r2", "w1", "w2", "w3"],
        ["g1", "g2"],
    ]


def test_dependencies_of_each_kind():
    assert BrokerNode("b").dependencies == ()
    assert StoreNode("s").dependencies == ()
    assert ReaderNode("r", store=Endpoint("s", "read")).dependencies == ("s",)
    assert WriterNode("w", broker="b", store=Endpoint("s", "write")).dependencies == ("b", "s")
    assert GatewayNode("g", broker="b", reader="r").dependencies == ("b", "r")


def test_references_to_missing_nodes_do_not_break_the_order():
    topology = topology_of(
        StoreNode("s"), WriterNode("w", broker="gone", store=Endpoint("s", "write"))
    )
    assert start_batches(topology) == [["s"], ["w"]]


def test_no_cycle():
    assert find_cycle(bigger()) is None


def test_cycle_is_found_and_blocks_the_start_order():
    topology = topology_of(
        StoreNode("s"),
        GatewayNode("g1", broker="s", reader="g2"),
        GatewayNode("g2", broker="s", reader="g3"),
        GatewayNode("g3", broker="s", reader="g1"),
    )
    cycle = find_cycle(topology)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"g1", "g2", "g3"} and len(cycle) == 4
    with pytest.raises(CycleError):
        start_batches(topology)


def test_with_node_replaces_a_node_and_changes_the_order():
    topology = bigger().with_node(GatewayNode("g1", broker="b1", reader="g2"))
    order = start_order(topology)
    assert order.index("g2") < order.index("g1")
    assert start_batches(topology)[-1] == ["g1"]


def test_needed_by_follows_dependencies_transitively(shipped):
    from cqrs_flow.topology.graph import needed_by

    assert needed_by(shipped, {"gateway"}) == {"gateway", "broker", "reader", "store"}
    assert needed_by(shipped, {"writer", "store"}) == {"writer", "broker", "store"}
