"""MQTT clients (gmqtt) for gateways and writers: connect with retry, reconnect forever."""

from __future__ import annotations

import asyncio
import logging
import os

import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from cqrs_flow.topology.model import Address

__all__ = ["client_id", "connect"]

log = logging.getLogger("cqrs_flow.mqtt")


def client_id(system: str, node: str, persistent: bool) -> str:
    """A stable id for persistent sessions (the broker keeps a writer's queue across restarts);
    a unique one otherwise, so two processes never kick each other off."""
    base = f"{system}-{node}"
    return base if persistent else f"{base}-{os.getpid()}"


async def connect(client: gmqtt.Client, broker: Address, *, attempts: int | None = None) -> None:
    """Connect, retrying with backoff while the broker is not there yet. MQTT 3.1.1 because the
    embedded broker speaks nothing newer; every external broker speaks it too."""
    client.set_config({"reconnect_retries": -1, "reconnect_delay": 1})  # then reconnect forever
    delay, attempt = 0.1, 0
    while True:
        attempt += 1
        try:
            await client.connect(broker.connect_host, broker.port, version=MQTTv311, keepalive=30)
            return
        except (OSError, asyncio.TimeoutError) as exc:
            if attempts is not None and attempt >= attempts:
                raise
            if attempt == 1 or attempt % 10 == 0:
                log.warning("MQTT broker %s not reachable (%s); retrying", broker.target, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
