"""server: /metrics and health over HTTP, from a node's telemetry."""

from __future__ import annotations

import asyncio

import aiohttp

from cqrs_flow.telemetry import NodeTelemetry
from cqrs_flow.telemetry.server import start_metrics_server
from cqrs_flow.topology.model import Address
from cqrs_flow.topology.relocate import free_ports


def test_metrics_liveness_and_readiness():
    telemetry = NodeTelemetry("writer", "writer", "2")
    reachable = {"broker": True, "store": False}
    telemetry.readiness = lambda: dict(reachable)
    telemetry.facts["queue_depth"] = lambda: 7
    address = Address("127.0.0.1", free_ports(1)[0])

    async def scenario():
        runner = await start_metrics_server(telemetry, address)
        answers = []
        try:
            async with aiohttp.ClientSession() as session:

                async def get(path):
                    async with session.get(f"http://{address.target}{path}") as response:
                        return response.status, await response.text()

                answers.append(await get("/health/ready"))  # not started yet
                telemetry.started = True
                answers.append(await get("/health/ready"))  # the store is away
                reachable["store"] = True
                answers.append(await get("/health/ready"))
                answers.append(await get("/health/live"))
                answers.append(await get("/metrics"))
        finally:
            await runner.cleanup()
        return answers

    not_started, away, ready, live, metrics = asyncio.run(scenario())
    assert not_started[0] == 503 and away[0] == 503 and '"store": false' in away[1]
    assert ready[0] == 200 and '"queue_depth": 7' in ready[1] and '"replica": "2"' in ready[1]
    assert live == (200, '{"node": "writer", "live": true}')
    assert metrics[0] == 200 and "cqrs_flow_node_ready 1.0" in metrics[1]


def test_the_listener_answers_only_its_paths_and_stops_with_a_silent_client_connected():
    telemetry = NodeTelemetry("store", "store")
    address = Address("127.0.0.1", free_ports(1)[0])

    async def raw(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        writer.write(request)
        answer = await reader.read()
        writer.close()
        return answer

    async def scenario():
        server = await start_metrics_server(telemetry, address)
        try:
            unknown = await raw(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            posted = await raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            live = await raw(b"GET /health/live?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            silent = await asyncio.open_connection(address.host, address.port)
            await asyncio.sleep(0.05)
        finally:
            await asyncio.wait_for(server.cleanup(), 2)  # not the 10 s a silent client may take
        silent[1].close()
        return unknown, posted, live

    unknown, posted, live = asyncio.run(scenario())
    assert unknown.startswith(b"HTTP/1.1 404 ")
    assert posted.startswith(b"HTTP/1.1 405 ")
    assert live.startswith(b"HTTP/1.1 200 ") and live.endswith(b'{"node": "store", "live": true}')
