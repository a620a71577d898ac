"""One module per node kind; `run_node` runs any of them in the current process."""

from __future__ import annotations

import asyncio
import os
from typing import Mapping

from cqrs_flow.auth import credentials_from_env
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.runtime import NodeService, configure_logging, serve
from cqrs_flow.protos import ProtoSet
from cqrs_flow.topology.model import Topology

__all__ = ["NodeService", "build_service", "run_node"]


def _kinds() -> dict[str, type[NodeService]]:
    # Imported here so that loading one kind does not import every library.
    from cqrs_flow.nodes.broker import BrokerService
    from cqrs_flow.nodes.gateway import GatewayService
    from cqrs_flow.nodes.reader import ReaderService
    from cqrs_flow.nodes.store import StoreService
    from cqrs_flow.nodes.writer import WriterService

    return {"broker": BrokerService, "store": StoreService, "reader": ReaderService,
            "writer": WriterService, "gateway": GatewayService}


def build_service(topology: Topology, name: str, protos: ProtoSet,
                  env: Mapping[str, str] = os.environ) -> NodeService:
    node = topology.nodes.get(name)
    if node is None:
        raise NodeError(f"no node named '{name}' in {topology.source.name}; "
                        f"nodes: {', '.join(topology.nodes)}")
    credentials = credentials_from_env(topology, name, env)
    return _kinds()[node.kind](topology, node, protos, credentials)


def run_node(topology: Topology, name: str, protos: ProtoSet) -> None:
    """Run node `name` until SIGTERM or SIGINT; raises what made it fail."""
    configure_logging()
    service = build_service(topology, name, protos)
    asyncio.run(serve(service))
