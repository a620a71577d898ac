"""probes: a gateway is ready when GET /health answers 200 (asked without an HTTP library)."""

from __future__ import annotations

import asyncio

from cqrs_flow.launcher.probes import http_ok
from cqrs_flow.topology.model import Address
from cqrs_flow.topology.relocate import free_ports


def answers(reply: bytes | None) -> bool:
    """What http_ok says of a server that answers `reply` (None: that accepts and says nothing)."""
    address = Address("127.0.0.1", free_ports(1)[0])
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        if reply is None:
            await asyncio.sleep(1)
        else:
            writer.write(reply)
        writer.close()

    async def scenario() -> bool:
        server = await asyncio.start_server(serve, address.host, address.port)
        try:
            return await http_ok(address, timeout=0.3)
        finally:
            server.close()

    ok = asyncio.run(scenario())
    assert requests and requests[0].startswith(b"GET /health HTTP/1.1\r\n")
    return ok


def test_a_200_is_ready_and_anything_else_is_not():
    assert answers(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not answers(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    assert not answers(b"SSH-2.0-OpenSSH\r\n")
    assert not answers(None)  # silent: the attempt times out


def test_nothing_listening_is_not_ready():
    address = Address("127.0.0.1", free_ports(1)[0])
    assert not asyncio.run(http_ok(address, timeout=0.3))
