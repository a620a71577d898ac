"""MQTT clients (gmqtt) for gateways and writers: connect with retry, reconnect forever."""

from __future__ import annotations

import asyncio
import logging
import os

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from cqrs_flow.topology.model import BrokerNode

__all__ = ["client_id", "connect", "new_client"]

log = logging.getLogger("cqrs_flow.mqtt")


def client_id(system: str, node: str, persistent: bool) -> str:
    """A stable id for persistent sessions (the broker keeps a writer's queue across restarts);
    a unique one otherwise, so two processes never kick each other off."""
    base = f"{system}-{node}"
    return base if persistent else f"{base}-{os.getpid()}"


# A persistent MQTT 5 session must say how long the broker keeps it; this is the longest.
SESSION_FOREVER = 0xFFFFFFFF


def new_client(system: str, node: str, broker: BrokerNode, *, persistent: bool) -> gmqtt.Client:
    """A client for `broker`. With MQTT 5, a persistent client acknowledges each message when its
    handler returns (gmqtt acknowledges MQTT 3.1.1 messages on receipt, whatever the handler does)."""
    if broker.protocol == "5":
        extra = {"session_expiry_interval": SESSION_FOREVER} if persistent else {}
        return gmqtt.Client(client_id(system, node, persistent), clean_session=not persistent,
                            optimistic_acknowledgement=not persistent, **extra)
    return gmqtt.Client(client_id(system, node, persistent), clean_session=not persistent)


async def connect(client: gmqtt.Client, broker: BrokerNode, *, attempts: int | None = None) -> None:
    """Connect, retrying with backoff while the broker is not there yet."""
    address = broker.address
    version = MQTTv50 if broker.protocol == "5" else MQTTv311
    client.set_config({"reconnect_retries": -1, "reconnect_delay": 1})  # then reconnect forever
    delay, attempt = 0.1, 0
    while True:
        attempt += 1
        try:
            await client.connect(address.connect_host, address.port, version=version, keepalive=30)
            return
        except (OSError, asyncio.TimeoutError) as exc:
            if attempts is not None and attempt >= attempts:
                raise
            if attempt == 1 or attempt % 10 == 0:
                log.warning("MQTT broker %s not reachable (%s); retrying", address.target, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
