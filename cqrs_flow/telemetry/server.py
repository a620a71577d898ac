"""The HTTP listener every node has for its operators: Prometheus metrics and health.

    GET /metrics        the node's metrics, Prometheus text format
    GET /health/live    200 while the node's event loop answers (a stuck node answers nothing)
    GET /health/ready   200 when the node and what it depends on can serve, else 503; JSON
                        with the node, pid, restarts, listen addresses and each dependency
    GET /health         the same answer as /health/ready

It asks nothing of the node's work: a scrape reads counters, a probe reads connection states.
"""

from __future__ import annotations

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from cqrs_flow.errors import NodeError
from cqrs_flow.telemetry.node import NodeTelemetry
from cqrs_flow.telemetry.ports import in_use, port_holder
from cqrs_flow.topology.model import Address

__all__ = ["health_routes", "listen_error", "start_metrics_server"]


def health_routes(app: web.Application, telemetry: NodeTelemetry, *also: str) -> None:
    """Add /health/live and /health/ready (and the paths `also`, answered as it) to `app`."""

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"node": telemetry.node, "live": True})

    async def ready(request: web.Request) -> web.Response:
        status = telemetry.status()
        return web.Response(
            text=json.dumps(status),
            status=200 if status["ready"] else 503,
            content_type="application/json",
        )

    app.router.add_get("/health/live", live)
    for path in ("/health/ready", *also):
        app.router.add_get(path, ready)


async def start_metrics_server(telemetry: NodeTelemetry, listen: Address) -> web.AppRunner:
    """Serve `telemetry` on `listen`; the runner's cleanup stops it. NodeError naming the node,
    the address and who holds it when the port is taken."""

    async def metrics(request: web.Request) -> web.Response:
        telemetry.is_ready()  # cqrs_flow_node_ready as of this scrape
        return web.Response(
            body=telemetry.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    health_routes(app, telemetry, "/health")
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, listen.host, listen.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise NodeError(listen_error(telemetry.node, "metrics", listen, exc)) from None
    return runner


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
