"""Before `up` starts anything: is every address its nodes will listen on free?

A port already in use is said as such, naming the node, the address and (where the OS tells)
the process holding it, rather than found later as a node that cannot start, or as a broker
probe that logs in to whatever else listens there and is refused.
"""

from __future__ import annotations

from collections.abc import Collection

from cqrs_flow.telemetry.ports import port_holder, taken
from cqrs_flow.topology.model import Address, Topology

__all__ = ["listeners", "ports_in_use"]


def listeners(topology: Topology, names: Collection[str]) -> list[tuple[str, str, Address]]:
    """(process, what, address) for every listener of the processes of nodes `names` that `up`
    runs here (metrics included; external brokers are not ours)."""
    found = []
    for name in names:
        node = topology.nodes[name]
        if node.processes == 0:
            continue
        replicas = [None] if node.processes == 1 else list(range(1, node.processes + 1))
        for replica in replicas:
            process = name if replica is None else f"{name}.{replica}"
            if replica in (None, 1):
                found += [(process, what, address) for what, address in node.listens]
            metrics = topology.metrics_of(name, replica)
            if metrics is not None:
                found.append((process, "metrics", metrics))
    return found


def ports_in_use(topology: Topology, names: Collection[str]) -> list[str]:
    """One line for each listener of `names` whose address is in use now."""
    problems = []
    for process, what, address in listeners(topology, names):
        if taken(address):
            holder = port_holder(address.port)
            problems.append(
                f"node '{process}' cannot listen on {address} ({what}): port {address.port} is "
                "already in use" + (f" by {holder}" if holder else "")
            )
    return problems
