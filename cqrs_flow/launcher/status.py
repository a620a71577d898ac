"""`cqrs-flow status FILE`: every node process of a running system, as its health endpoint
tells (GET /health/ready on its metrics address): up and ready or not (and what it misses),
pid, restarts, listen addresses, queue depth. A node without metrics is only checked to answer
on its listen addresses; one that answers nothing is down.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp

from cqrs_flow.topology.model import Address, Topology

__all__ = ["NodeStatus", "format_status", "system_status"]

TIMEOUT = 2.0  # seconds a node has to answer


@dataclass(frozen=True)
class NodeStatus:
    process: str  # the node's name, or <node>.<replica>, or "<node> (in <host>'s process)"
    kind: str
    state: str  # ready, not ready (<what it misses>), up, down, external
    pid: int | None = None
    restarts: int | None = None
    listen: tuple[str, ...] = ()
    queue: int | None = None
    details: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def up(self) -> bool:
        return self.state not in ("down", "external")


async def system_status(topology: Topology) -> list[NodeStatus]:
    """The status of every node process of `topology`, in the order the nodes are written."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        asked = []
        for name, node in topology.nodes.items():
            if node.processes == 0:
                asked.append(_external(name, node.kind))
                continue
            replicas = [None] if node.processes == 1 else list(range(1, node.processes + 1))
            for replica in replicas:
                asked.append(_process_status(session, topology, name, replica))
        return list(await asyncio.gather(*asked))


async def _external(name: str, kind: str) -> NodeStatus:
    return NodeStatus(name, kind, "external")


async def _process_status(
    session: aiohttp.ClientSession, topology: Topology, name: str, replica: int | None
) -> NodeStatus:
    node = topology.nodes[name]
    process = name if replica is None else f"{name}.{replica}"
    if (host := topology.host_of(name)) != name:
        process = f"{name} (in {host}'s process)"  # a reader placed in its gateway's process
    listens = tuple(f"{what} {address}" for what, address in node.listens)
    metrics = topology.metrics_of(name, replica)
    if metrics is None:
        answering = [await _answers(address) for _, address in node.listens]
        state = "up" if answering and all(answering) else "down"
        return NodeStatus(process, node.kind, state, listen=listens)
    try:
        async with session.get(f"http://{metrics.target}/health/ready") as response:
            status = json.loads(await response.text())
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
        return NodeStatus(process, node.kind, "down", listen=(*listens, f"metrics {metrics}"))
    if not isinstance(status, dict):
        return NodeStatus(process, node.kind, "down", listen=listens)
    missing = [what for what, ok in (status.get("dependencies") or {}).items() if not ok]
    if status.get("ready"):
        state = "ready"
    elif status.get("stopping"):
        state = "stopping"
    elif not status.get("started"):
        state = "starting"
    else:
        state = f"not ready ({', '.join(missing) or 'unknown'})"
    return NodeStatus(
        process,
        node.kind,
        state,
        pid=status.get("pid"),
        restarts=status.get("restarts"),
        listen=tuple(status.get("listen") or listens),
        queue=status.get("queue_depth"),
        details=status,
    )


async def _answers(address: Address) -> bool:
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(address.connect_host, address.port), TIMEOUT
        )
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


def format_status(rows: list[NodeStatus]) -> str:
    """A table: NODE KIND STATE PID RESTARTS QUEUE LISTEN."""
    table = [("NODE", "KIND", "STATE", "PID", "RESTARTS", "QUEUE", "LISTEN")]
    for row in rows:
        table.append(
            (
                row.process,
                row.kind,
                row.state,
                _shown(row.pid),
                _shown(row.restarts),
                _shown(row.queue),
                ", ".join(row.listen) or "-",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        for line in table
    )


def _shown(value: object) -> str:
    return "-" if value is None else str(value)
