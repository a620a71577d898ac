"""Readiness probes: is a node doing its job yet? Each asks the node the way its clients will:
an MQTT CONNACK from a broker (logging in as one of its users), the standard gRPC health service
of a store and a reader, GET /health of a gateway; a writer, which listens on nothing, says so on
its readiness pipe. One attempt per call, bounded by ATTEMPT_TIMEOUT; retrying is the caller's.
"""

from __future__ import annotations

import asyncio
import os
import ssl

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cqrs_flow.errors import NodeError, StartError
from cqrs_flow.launcher.process import Process
from cqrs_flow.security.mqtt_logins import MqttLogin
from cqrs_flow.topology.checks import grpc_endpoints
from cqrs_flow.topology.model import (
    Address,
    BrokerNode,
    GatewayNode,
    Node,
    ReaderNode,
    StoreNode,
    TlsServer,
    Topology,
)
from cqrs_flow.transport import rpc
from cqrs_flow.transport.tls import ChannelSecurity, channel_security, mqtt_client_context

__all__ = ["Probe", "http_ok", "mqtt_connack", "mqtt_connack_code"]

ATTEMPT_TIMEOUT = 1.0


CONNACK_REFUSALS = {4: "bad user name or password", 5: "not authorised"}


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def mqtt_connack_code(
    address: Address,
    login: MqttLogin | None = None,
    timeout: float = ATTEMPT_TIMEOUT,
    tls: ssl.SSLContext | None = None,
) -> int | None:
    """Open an MQTT 3.1.1 session (logging in with `login`, if given; over TLS with `tls`) and
    return the broker's CONNACK return code; None when no broker answers."""
    client_id = f"cqrs-flow-probe-{os.getpid()}".encode()
    flags = 0x02 | (0xC0 if login else 0)  # clean session; user name and password
    variable = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x0a"  # level 4, keepalive 10
    payload = _string(client_id)
    if login:
        payload += _string(login.user.encode()) + _string(login.password.encode())
    body = variable + payload
    packet = b"\x10" + _remaining_length(len(body)) + body
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address.connect_host, address.port, ssl=tls), timeout
        )
    except (OSError, asyncio.TimeoutError):  # ssl.SSLError is an OSError
        return None
    try:
        writer.write(packet)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readexactly(4), timeout)
        if answer[0] != 0x20:
            return None
        if answer[3] == 0:
            writer.write(b"\xe0\x00")  # DISCONNECT
            await writer.drain()
        return answer[3]
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()


async def mqtt_connack(
    address: Address, timeout: float = ATTEMPT_TIMEOUT, login: MqttLogin | None = None
) -> bool:
    """Whether the broker accepts an MQTT 3.1.1 session (CONNACK code 0)."""
    return await mqtt_connack_code(address, login, timeout) == 0


async def http_ok(address: Address, timeout: float = ATTEMPT_TIMEOUT) -> bool:
    """Whether GET /health at `address` answers 200. A request written by hand: the launcher has
    no other use for an HTTP client, and importing one (aiohttp) would cost its start 0.1 s."""
    request = f"GET /health HTTP/1.1\r\nHost: {address.target}\r\nConnection: close\r\n\r\n"
    opened: list[asyncio.StreamWriter] = []

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection(address.connect_host, address.port)
        opened.append(writer)
        writer.write(request.encode("ascii"))
        return await reader.readline()

    try:
        status_line = await asyncio.wait_for(ask(), timeout)
    except (asyncio.TimeoutError, OSError, ValueError):
        return False
    finally:
        for writer in opened:
            writer.close()
    parts = status_line.split()
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1] == b"200"


class Probe:
    """One probe per node; `ready()` makes one attempt and answers True or False."""

    def __init__(
        self,
        node: Node,
        process: Process | None = None,
        login: MqttLogin | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.node = node
        self.process = process
        self.login = login  # a broker: one of its users, to check it knows them
        self.topology = topology  # to reach TLS endpoints: where the certificates are
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def ready(self) -> bool:
        node = self.node
        if isinstance(node, BrokerNode):
            code = await mqtt_connack_code(node.address, self.login, tls=self._mqtt_tls())
            return self._broker_ready(node, code)
        if isinstance(node, StoreNode):
            return all(
                [
                    await self._grpc_health(
                        node.write.listen, ("nodes", node.name, "write"), node.write.tls
                    ),
                    await self._grpc_health(
                        node.read.listen, ("nodes", node.name, "read"), node.read.tls
                    ),
                ]
            )
        if isinstance(node, ReaderNode):
            return await self._grpc_health(node.listen, ("nodes", node.name), node.tls)
        if isinstance(node, GatewayNode):
            return await self._http_health(node.listen)
        # A writer listens on nothing; it signals on the readiness pipe once subscribed.
        return self.process is not None and self.process.ready_signal.is_set()

    def _mqtt_tls(self) -> ssl.SSLContext | None:
        if self.topology is None or not isinstance(self.node, BrokerNode):
            return None
        try:
            return mqtt_client_context(self.topology, self.node)
        except NodeError as exc:
            raise StartError(str(exc)) from None

    def _broker_ready(self, node: BrokerNode, code: int | None) -> bool:
        """Answering is ready; refusing the login of a node that needs it is an error."""
        if code in CONNACK_REFUSALS and self.login is not None:
            raise StartError(
                f"broker '{node.name}' at {node.address.target} refused the login of node "
                f"'{self.login.user}' ({CONNACK_REFUSALS[code]}): it must accept each node's name "
                "and its password derived from the system secret (for Mosquitto: "
                "`cqrs-flow mosquitto-auth`)"
            )
        return code == 0 or (code in CONNACK_REFUSALS and self.login is None)

    def _security(self, endpoint: tuple[str, ...], tls: TlsServer | None) -> ChannelSecurity | None:
        """TLS as a caller of the endpoint sees it; with client_auth, one caller's certificate."""
        if tls is None or self.topology is None:
            return None
        callers = next(
            (c for path, _, _, c in grpc_endpoints(self.topology) if path == endpoint), []
        )
        client = (
            next((c.client_tls for c in callers if c.client_tls), None) if tls.client_auth else None
        )
        try:
            return channel_security(self.topology, tls, client)
        except NodeError as exc:
            raise StartError(str(exc)) from None

    async def _grpc_health(
        self, address: Address, endpoint: tuple[str, ...] = (), tls: TlsServer | None = None
    ) -> bool:
        channel = self._channels.get(address.target)
        if channel is None:
            channel = self._channels[address.target] = rpc.channel(
                address.target, fast_retry=True, security=self._security(endpoint, tls)
            )
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=ATTEMPT_TIMEOUT
            )
        except grpc.aio.AioRpcError:
            return False
        serving: bool = answer.status == health_pb2.HealthCheckResponse.SERVING
        return serving

    async def _http_health(self, address: Address) -> bool:
        return await http_ok(address)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)  # no grace: a probe has nothing in flight
