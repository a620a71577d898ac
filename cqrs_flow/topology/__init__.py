"""Topology: the YAML description of a CQRS system, its model, loading and checks."""

from cqrs_flow.topology.graph import start_batches, start_order
from cqrs_flow.topology.loader import load_topology, parse_topology
from cqrs_flow.topology.model import (
    Address,
    BrokerNode,
    Command,
    Endpoint,
    GatewayNode,
    Mutation,
    Node,
    Query,
    ReaderNode,
    Service,
    StoreNode,
    Topology,
    WriterNode,
)

__all__ = [
    "Address",
    "BrokerNode",
    "Command",
    "Endpoint",
    "GatewayNode",
    "Mutation",
    "Node",
    "Query",
    "ReaderNode",
    "Service",
    "StoreNode",
    "Topology",
    "WriterNode",
    "load_topology",
    "parse_topology",
    "start_batches",
    "start_order",
]
