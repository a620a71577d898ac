"""The contract check of `cqrs-flow validate`: every node's plan worked out, every problem kept."""

from __future__ import annotations

from cqrs_flow.contracts import plugin_classes
from cqrs_flow.contracts.entities import check_entities
from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.contracts.projection import projection_plan
from cqrs_flow.contracts.reader import reader_plan
from cqrs_flow.contracts.store import store_plan
from cqrs_flow.contracts.writer import writer_plan
from cqrs_flow.errors import Problem
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.topology.model import (
    GatewayNode,
    ProjectionNode,
    ReaderNode,
    StoreNode,
    Topology,
    WriterNode,
)
from cqrs_flow.topology.problems import Problems

__all__ = ["check_contracts"]


def check_contracts(
    topology: Topology, protos: ProtoSet, import_plugins: bool = True
) -> list[Problem]:
    """Every problem between the topology, its protos and its GraphQL schemas. Plugins are
    imported (their module's code runs) only with `import_plugins`; without, what depends on
    them is not checked: a reader RPC the store does not serve may be one a plugin answers."""
    report = Problems(topology.located)
    check_entities(topology, protos, report)
    for node in topology.nodes.values():
        if isinstance(node, StoreNode):
            store_plan(topology, node, protos, report)
        elif isinstance(node, ReaderNode):
            reader_plan(topology, node, protos, report, import_plugins=import_plugins)
        elif isinstance(node, WriterNode):
            writer_plan(topology, node, protos, report)
            if import_plugins:
                plugin_classes(topology, node, report)
        elif isinstance(node, GatewayNode):
            gateway_plan(topology, node, protos, report)
            if import_plugins:
                plugin_classes(topology, node, report)
        elif isinstance(node, ProjectionNode):
            projection_plan(topology, node, protos, report, import_plugins=import_plugins)
    return report.problems
