"""Dependencies between nodes: start order, start batches and cycles."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from cqrs_flow.topology.model import Topology

__all__ = ["find_cycle", "launch_sorter", "needed_by", "sorter", "start_batches", "start_order"]


def sorter(topology: Topology) -> TopologicalSorter[str]:
    """A prepared TopologicalSorter over the nodes; raises CycleError on a cycle."""
    graph = TopologicalSorter(
        {
            name: [d for d in node.dependencies if d in topology.nodes]
            for name, node in topology.nodes.items()
        }
    )
    graph.prepare()
    return graph


def launch_sorter(topology: Topology) -> TopologicalSorter[str]:
    """`sorter` for starting processes: a node run in another's process (a reader in its
    gateway's, `host_of`) waits also for what its host needs, since the process that runs it
    starts the host as well; the host still waits for it."""
    needs: dict[str, set[str]] = {
        name: {d for d in node.dependencies if d in topology.nodes}
        for name, node in topology.nodes.items()
    }
    for name in topology.nodes:
        host = topology.host_of(name)
        if host != name:
            needs[name] |= needs[host] - {name}
    graph = TopologicalSorter(needs)
    graph.prepare()
    return graph


def needed_by(topology: Topology, names: set[str]) -> set[str]:
    """`names` and every node they depend on, directly or not."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in found and name in topology.nodes:
            found.add(name)
            todo.extend(topology.nodes[name].dependencies)
    return found


def start_batches(topology: Topology) -> list[list[str]]:
    """Nodes grouped into batches that can start together, in start order."""
    graph = sorter(topology)
    batches = []
    while graph.is_active():
        ready = sorted(graph.get_ready())
        batches.append(ready)
        graph.done(*ready)
    return batches


def start_order(topology: Topology) -> list[str]:
    return [name for batch in start_batches(topology) for name in batch]


def find_cycle(topology: Topology) -> list[str] | None:
    """The nodes of one dependency cycle, or None when there is none."""
    try:
        sorter(topology)
    except CycleError as exc:
        return list(exc.args[1])
    return None
