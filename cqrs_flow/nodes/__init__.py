"""One module per node kind; `run_node` runs any of them in the current process."""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Coroutine, Mapping
from typing import Any

from cqrs_flow.contracts.process import ENV_REPLICA
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.runtime import NodeService, configure_logging, serve
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.security.secret import read_secret
from cqrs_flow.security.tokens import ENV_SECRET, ENV_TOKEN, credentials_from_env
from cqrs_flow.topology.model import Topology

__all__ = ["ENV_EVENT_LOOP", "NodeService", "build_service", "run_loop", "run_node"]

# "asyncio" runs a node on asyncio's own event loop even where uvloop is installed.
ENV_EVENT_LOOP = "CQRS_FLOW_EVENT_LOOP"


# Node kind -> (module, class). Only the node's own module is imported, so a broker does not
# load aiohttp and tartiflette: faster start-up and less memory per process.
_KINDS = {
    "broker": ("cqrs_flow.nodes.broker.service", "BrokerService"),
    "store": ("cqrs_flow.nodes.store", "StoreService"),
    "reader": ("cqrs_flow.nodes.reader", "ReaderService"),
    "writer": ("cqrs_flow.nodes.writer", "WriterService"),
    "gateway": ("cqrs_flow.nodes.gateway.service", "GatewayService"),
    "projection": ("cqrs_flow.nodes.projection", "ProjectionService"),
}


def _service_class(kind: str) -> type[NodeService]:
    module, name = _KINDS[kind]
    service_class: type[NodeService] = getattr(importlib.import_module(module), name)
    return service_class


def build_service(
    topology: Topology, name: str, protos: ProtoSet, env: Mapping[str, str] = os.environ
) -> NodeService:
    node = topology.nodes.get(name)
    if node is None:
        raise NodeError(
            f"no node named '{name}' in {topology.source.name}; nodes: {', '.join(topology.nodes)}"
        )
    credentials = credentials_from_env(topology, name, env)
    return _service_class(node.kind)(topology, node, protos, credentials)


def run_node(topology: Topology, name: str, protos: ProtoSet) -> None:
    """Run node `name` until SIGTERM or SIGINT; raises what made it fail."""
    replica = os.environ.get(ENV_REPLICA)
    configure_logging(node=f"{name}.{replica}" if replica else name)
    if (
        ENV_TOKEN not in os.environ
    ):  # run by hand, not by `up`: the secret may be where the topology says
        secret = read_secret(topology)
        if secret:
            os.environ[ENV_SECRET] = secret
    service = build_service(topology, name, protos)
    # the nodes placed in this one's process (a reader in its gateway's), started before it
    guests = [build_service(topology, guest, protos) for guest in topology.guests_of(name)]
    run_loop(serve(service, guests))


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop's event loop where it is installed, else on asyncio's own (or when
    CQRS_FLOW_EVENT_LOOP=asyncio). uvloop's loop costs less per callback, socket read and timer:
    the system's CPU per query is about a tenth lower (docs/PERFORMANCE.md)."""
    if os.environ.get(ENV_EVENT_LOOP, "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:  # not built for this platform: asyncio's loop does the same work
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
