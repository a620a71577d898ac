"""The HTTP listener every node has for its operators: Prometheus metrics and health.

    GET /metrics        the node's metrics, Prometheus text format
    GET /health/live    200 while the node's event loop answers (a stuck node answers nothing)
    GET /health/ready   200 when the node and what it depends on can serve, else 503; JSON
                        with the node, pid, restarts, listen addresses and each dependency
    GET /health         the same answer as /health/ready

It asks nothing of the node's work: a scrape reads counters, a probe reads connection states.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST

from cqrs_flow.errors import NodeError
from cqrs_flow.telemetry.node import NodeTelemetry
from cqrs_flow.telemetry.ports import in_use, port_holder
from cqrs_flow.topology.model import Address

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MetricsServer", "health_routes", "listen_error", "start_metrics_server"]

HEAD_BYTES = 8192  # the most a request's line and headers may take
READ_TIMEOUT = 10.0  # seconds a client has to send them
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
JSON = "application/json; charset=utf-8"


def health_routes(app: web.Application, telemetry: NodeTelemetry, *also: str) -> None:
    """Add /health/live and /health/ready (and the paths `also`, answered as it) to `app` (an
    aiohttp application: the gateway's, which serves them beside GraphQL)."""
    from aiohttp import web

    async def live(request: web.Request) -> web.Response:
        status, _, body = _live(telemetry)
        return web.Response(body=body, status=status, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        status, _, body = _ready(telemetry)
        return web.Response(body=body, status=status, content_type="application/json")

    app.router.add_get("/health/live", live)
    for path in ("/health/ready", *also):
        app.router.add_get(path, ready)


Answer = tuple[int, str, bytes]  # status, content type, body


def _live(telemetry: NodeTelemetry) -> Answer:
    return 200, JSON, json.dumps({"node": telemetry.node, "live": True}).encode()


def _ready(telemetry: NodeTelemetry) -> Answer:
    status = telemetry.status()
    return (200 if status["ready"] else 503), JSON, json.dumps(status).encode()


def _metrics(telemetry: NodeTelemetry) -> Answer:
    telemetry.is_ready()  # cqrs_flow_node_ready as of this scrape
    return 200, CONTENT_TYPE_LATEST, telemetry.metrics.exposition()


class MetricsServer:
    """The operators' listener: one GET per connection, answered and closed. It is asyncio's
    own server rather than aiohttp's, so that the nodes that serve nothing else over HTTP do
    not import aiohttp (about a third of their start-up)."""

    def __init__(self, telemetry: NodeTelemetry) -> None:
        self.routes: dict[str, Callable[[NodeTelemetry], Answer]] = {
            "/metrics": _metrics,
            "/health/live": _live,
            "/health/ready": _ready,
            "/health": _ready,
        }
        self.telemetry = telemetry
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()  # connections open

    async def start(self, listen: Address) -> None:
        self.server = await asyncio.start_server(
            self._serve, listen.host, listen.port, limit=HEAD_BYTES
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, _, rest = head.partition(b" ")
            target = rest.partition(b" ")[0].decode("latin-1").partition("?")[0]
            route = self.routes.get(target)
            if method not in (b"GET", b"HEAD"):
                answer: Answer = (405, "text/plain", b"only GET\n")
            elif route is None:
                answer = (404, "text/plain", b"not found\n")
            else:
                answer = route(self.telemetry)
            status, content_type, body = answer
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
                + (body if method != b"HEAD" else b"")
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass  # a client that sent no complete request gets no answer
        except (ConnectionError, ValueError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def cleanup(self) -> None:
        """Stop listening and close the connections still open (a client that sends nothing
        does not hold the node's stop up)."""
        if self.server is not None:
            self.server.close()
            for writer in list(self._clients):
                writer.close()
            await self.server.wait_closed()


async def start_metrics_server(telemetry: NodeTelemetry, listen: Address) -> MetricsServer:
    """Serve `telemetry` on `listen`; the server's cleanup stops it. NodeError naming the node,
    the address and who holds it when the port is taken."""
    server = MetricsServer(telemetry)
    try:
        await server.start(listen)
    except OSError as exc:
        raise NodeError(listen_error(telemetry.node, "metrics", listen, exc)) from None
    return server


def listen_error(node: str, what: str, listen: Address, error: OSError) -> str:
    """ "node 'gateway' cannot listen on 127.0.0.1:8080 (http): port 8080 is already in use
    (by pid 1234 (...))", or the OS's reason when it is not that."""
    if not in_use(error):
        return f"node '{node}' cannot listen on {listen} ({what}): {error.strerror or error}"
    holder = port_holder(listen.port)
    by = f" by {holder}" if holder else ""
    return (
        f"node '{node}' cannot listen on {listen} ({what}): port {listen.port} is already in "
        f"use{by}"
    )
