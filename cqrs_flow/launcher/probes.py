"""Readiness probes: is a node doing its job yet? Each asks the node the way its clients will."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cqrs_flow import rpc
from cqrs_flow.launcher.process import NodeProcess
from cqrs_flow.topology.model import Address, BrokerNode, GatewayNode, Node, ReaderNode, StoreNode

__all__ = ["Probe", "mqtt_connack"]

ATTEMPT_TIMEOUT = 1.0


async def mqtt_connack(address: Address, timeout: float = ATTEMPT_TIMEOUT) -> bool:
    """Open an MQTT 3.1.1 session and check the broker accepts it (CONNACK code 0)."""
    client_id = f"cqrs-flow-probe-{os.getpid()}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol name, level 4, clean session, keepalive 10
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    packet = b"\x10" + bytes([len(body)]) + body
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address.connect_host, address.port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(packet)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readexactly(4), timeout)
        ok = answer[0] == 0x20 and answer[3] == 0
        writer.write(b"\xe0\x00")  # DISCONNECT
        await writer.drain()
        return ok
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()


class Probe:
    """One probe per node; `ready()` makes one attempt and answers True or False."""

    def __init__(self, node: Node, process: NodeProcess | None = None) -> None:
        self.node = node
        self.process = process
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def ready(self) -> bool:
        node = self.node
        if isinstance(node, BrokerNode):
            return await mqtt_connack(node.address)
        if isinstance(node, StoreNode):
            return all([await self._grpc_health(node.write.listen), await self._grpc_health(node.read.listen)])
        if isinstance(node, ReaderNode):
            return await self._grpc_health(node.listen)
        if isinstance(node, GatewayNode):
            return await self._http_health(node.listen)
        # A writer listens on nothing; it signals on the readiness pipe once subscribed.
        return self.process is not None and self.process.ready_signal.is_set()

    async def _grpc_health(self, address: Address) -> bool:
        channel = self._channels.get(address.target)
        if channel is None:
            channel = self._channels[address.target] = rpc.channel(address.target, fast_retry=True)
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=ATTEMPT_TIMEOUT)
        except grpc.aio.AioRpcError:
            return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    async def _http_health(self, address: Address) -> bool:
        try:
            timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(f"http://{address.target}/health") as response:
                    return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
