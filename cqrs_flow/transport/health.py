"""The standard gRPC health service of every cqrs-flow server, bounded for callers without a login.

The health service answers without credentials (readiness probes have none), so what it holds
for a caller must be bounded: a server has at most MAX_WATCHES `Watch` streams open at once (more
are answered RESOURCE_EXHAUSTED at once), and a stream ends (OK) after WATCH_LIFETIME, when a
client that still wants to watch calls again. `Check` and `List` answer and hold nothing.
grpcio-health-checking's servicer leaves `List` unimplemented (its callers got "Unexpected
NotImplementedError"); here it lists the statuses this server has set.

On a node's server, the health service answers for the node (cqrs_flow.telemetry):
  - "" and the name of every service the node serves (`contacts.ContactReader`): SERVING while
    the node is ready, NOT_SERVING while something it depends on is unreachable (a reader's
    store) or it is stopping: what readiness probes ask;
  - "liveness": SERVING whenever it answers at all (a node whose event loop is stuck does not
    answer): what liveness probes ask.
Any other name is NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # no stubs

from cqrs_flow.telemetry import CURRENT, LIVENESS

__all__ = ["MAX_WATCHES", "WATCH_LIFETIME", "HealthService"]

MAX_WATCHES = 100  # Watch streams open at once on one server
WATCH_LIFETIME = 300.0  # seconds a Watch stream lasts
READINESS_POLL = 1.0  # seconds between looks at a node's readiness for a Watch stream


class HealthService(health_aio.HealthServicer):  # type: ignore[misc]  # an Any, without stubs
    """grpcio-health-checking's servicer, with `List`, and `Watch` capped in number and time."""

    def __init__(self, max_watches: int = MAX_WATCHES, lifetime: float = WATCH_LIFETIME) -> None:
        super().__init__()
        self.max_watches = max_watches
        self.lifetime = lifetime
        self.watches = 0  # open now
        self._changed = asyncio.Condition()
        self.node = CURRENT.get()  # the node whose server this is, if any
        # The services of this server (a store's write and read servers serve different ones).
        self.services = self.node.claim_services() if self.node is not None else frozenset()

    def _status(self, service: str) -> Any:
        statuses: dict[str, Any] = self._server_status  # the servicer's one table of statuses
        serving = health_pb2.HealthCheckResponse.SERVING
        if self.node is None:
            return statuses.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        if service == LIVENESS:
            return serving
        if service != "" and service not in self.services:
            return statuses.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        server = statuses.get("", health_pb2.HealthCheckResponse.NOT_SERVING)
        if server != serving:  # not started yet, or shutting down
            return server
        return serving if self.node.is_ready() else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        status = self._status(request.service)
        if status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def set(self, service: str, status: Any) -> None:
        await super().set(service, status)
        async with self._changed:
            self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        async with self._changed:
            self._changed.notify_all()

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        names = set(self._server_status)
        if self.node is not None:
            names |= {LIVENESS, *self.services}
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=self._status(name))
                for name in sorted(names)
            }
        )

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """The service's status now and at each change, for `lifetime` seconds; refused when
        `max_watches` streams are open."""
        if self.watches >= self.max_watches:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.max_watches} health watches are open on this server; call Check, or "
                "watch again later",
            )
        self.watches += 1
        try:
            loop = asyncio.get_running_loop()
            ends = loop.time() + self.lifetime
            sent = None
            async with self._changed:
                while True:
                    status = self._status(request.service)
                    if status != sent:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        sent = status
                    left = ends - loop.time()
                    if left <= 0:
                        return
                    # A node's readiness changes without a `set`: look again now and then.
                    wait = left if self.node is None else min(left, READINESS_POLL)
                    try:
                        await asyncio.wait_for(self._changed.wait(), wait)
                    except asyncio.TimeoutError:
                        if loop.time() >= ends:
                            return
        finally:
            self.watches -= 1
