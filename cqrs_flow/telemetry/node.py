"""A node's telemetry: its metrics, what it says of its own health, and which node it is.

A node sets its `NodeTelemetry` as the current one (`CURRENT`) before it sets itself up; what
it builds then (gRPC handlers, health services) takes it from there, so the count of a gRPC
call lands in the registry of the node that serves it without handing the node down every
call. Code run outside a node gets a process-wide one (`current()`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar

from cqrs_flow.telemetry.metrics import Metrics

__all__ = ["CURRENT", "LIVENESS", "NodeTelemetry", "current"]

# The gRPC health service name liveness probes ask for: SERVING whenever the node answers.
LIVENESS = "liveness"

Readiness = Callable[[], Mapping[str, bool]]


def _nothing_needed() -> Mapping[str, bool]:
    return {}


class NodeTelemetry:
    """What one node reports about itself.

    `readiness` says, for each thing the node depends on (its broker, its store, its reader),
    whether it can reach it now; the node is ready when it has started and all are reachable.
    `services` are the gRPC services it serves, each of which its health service answers for
    by name. `status` adds facts to the health answer (queue depth, listen addresses)."""

    def __init__(
        self, node: str = "", kind: str = "", replica: str = "", metrics: Metrics | None = None
    ) -> None:
        self.node = node
        self.kind = kind
        self.replica = replica
        self.metrics = metrics or Metrics()
        self.metrics.info.labels(node, kind, replica).set(1)
        self.services: set[str] = set()
        self._unclaimed: set[str] = set()  # served by handlers whose server has no health yet
        self.readiness: Readiness = _nothing_needed
        self.restarts = 0  # times `up` restarted this node before this process
        self.started = False
        self.stopping = False
        self.listens: list[str] = []  # "what address", for status
        self.facts: dict[str, Callable[[], object]] = {}  # name -> value now, for status

    def serves(self, service: str) -> None:
        """The node serves gRPC service `service` (on the server it builds next)."""
        self.services.add(service)
        self._unclaimed.add(service)

    def claim_services(self) -> frozenset[str]:
        """The services of the server being started: those served since the last claim (a node
        builds each server's handlers, then starts it, one server after the other)."""
        claimed, self._unclaimed = frozenset(self._unclaimed), set()
        return claimed

    def dependencies(self) -> dict[str, bool]:
        try:
            return dict(self.readiness())
        except Exception:  # a node half set up: not ready
            return {"node": False}

    def is_ready(self) -> bool:
        ready = self.started and not self.stopping and all(self.dependencies().values())
        self.metrics.ready.set(1 if ready else 0)
        return ready

    def status(self) -> dict[str, object]:
        """The node's health as `/health/ready` and `cqrs-flow status` show it."""
        dependencies = self.dependencies()
        ready = self.started and not self.stopping and all(dependencies.values())
        self.metrics.ready.set(1 if ready else 0)
        return {
            "node": self.node,
            "kind": self.kind,
            "replica": self.replica or None,
            "pid": os.getpid(),
            "ready": ready,
            "started": self.started,
            "stopping": self.stopping,
            "dependencies": dependencies,
            "restarts": self.restarts,
            "listen": list(self.listens),
            **{name: fact() for name, fact in self.facts.items()},
        }


_PROCESS = NodeTelemetry()
CURRENT: ContextVar[NodeTelemetry | None] = ContextVar("cqrs_flow_node_telemetry", default=None)


def current() -> NodeTelemetry:
    """The telemetry of the node being set up (or running) here; the process's otherwise."""
    return CURRENT.get() or _PROCESS
