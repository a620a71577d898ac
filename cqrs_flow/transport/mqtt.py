"""MQTT clients (gmqtt) for gateways and writers: connect with retry, reconnect forever.

A link cut off (a partition, a host gone) is noticed within the broker's `keep_alive` (pings
when idle; a connection silent for twice that is given up) and connected anew, every
`reconnect_delay`, each try bounded by `connect_timeout`: a TCP connect to a host that cannot
be reached would otherwise wait out the kernel's SYN retries (1, 3, 7, 15 s...), and a link
that comes back would be used only at the next of them (docs/RELIABILITY.md)."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import ssl
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from cqrs_flow.errors import NodeError
from cqrs_flow.security.mqtt_logins import MqttLogin
from cqrs_flow.topology.model import BrokerNode, Topology, WriterNode

__all__ = [
    "BoundedClient",
    "client_id",
    "command_bytes",
    "connect",
    "discard_session",
    "keep_alive",
    "max_packet_bytes",
    "new_client",
]

log = logging.getLogger("cqrs_flow.transport.mqtt")


def client_id(system: str, node: str, persistent: bool, tag: str = "") -> str:
    """A stable id for persistent sessions (the broker keeps a writer's queue across restarts);
    a unique one otherwise, so two processes never kick each other off. `tag` (see MqttLogin.tag)
    makes it unguessable."""
    base = f"{system}-{node}" + (f"-{tag}" if tag else "")
    return base if persistent else f"{base}-{os.getpid()}"


# The largest command on a broker without writers: a writer's default payload_bytes.
DEFAULT_COMMAND_BYTES = 1024 * 1024
# The largest message of several commands: a burst of a gateway's commands in a few messages,
# none of which keeps a writer on one message for long.
BATCH_BYTES = 64 * 1024
# Room in a packet beyond the command: its topic (up to 65,535 bytes, named twice in a dead
# letter), the headers, and a dead letter's other fields.
PACKET_HEADROOM = 256 * 1024


def _payload_bytes(topology: Topology, broker: str) -> list[int]:
    """The `payload_bytes` of each writer on `broker`."""
    return [
        node.payload_bytes
        for node in topology.nodes.values()
        if isinstance(node, WriterNode) and node.broker == broker
    ]


def command_bytes(topology: Topology, broker: str) -> int:
    """The largest command the writers on `broker` take (their largest `payload_bytes`): a
    gateway refuses a larger one, which every writer would set aside."""
    return max(_payload_bytes(topology, broker), default=DEFAULT_COMMAND_BYTES)


def batch_bytes(topology: Topology, broker: str) -> int:
    """The largest message of several commands a gateway publishes through `broker`
    (transport/command_batches.py): what the writers on it with the smallest `payload_bytes`
    take, and at most BATCH_BYTES. A larger command goes alone."""
    return min([BATCH_BYTES, *_payload_bytes(topology, broker)])


def max_packet_bytes(topology: Topology, broker: str) -> int:
    """The largest MQTT packet (remaining length) the embedded broker `broker` takes: the largest
    message any node sends through it is a dead letter carrying a command in base64 (4/3 of it),
    plus headroom for the topics and fields."""
    return -(-command_bytes(topology, broker) // 3) * 4 + PACKET_HEADROOM


# A persistent MQTT 5 session must say how long the broker keeps it; this is the longest.
SESSION_FOREVER = 0xFFFFFFFF


def keep_alive(broker: BrokerNode) -> int:
    """The keep-alive a client announces, in the whole seconds MQTT counts (1 to 65535)."""
    return min(max(math.ceil(broker.keep_alive), 1), 0xFFFF)


class BoundedClient(gmqtt.Client):  # type: ignore[misc]  # gmqtt is untyped
    """A gmqtt client whose every TCP (and TLS) connect, the first and each reconnect, gives up
    after `connect_timeout` seconds with an OSError: gmqtt then tries again after its
    reconnect_delay, rather than waiting on a connect to a host cut off. A reconnect cancelled
    (the node stopping) is not logged as a failure."""

    connect_timeout: float = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        handler = getattr(self, "_package_handler", None)
        if handler is not None:  # gmqtt 0.8: where reconnects are started on a lost connection
            handler._handle_exception_in_future = _outcome_logger(
                handler._handle_exception_in_future
            )

    def _handle_exception_in_future(self, future: Any, msg: str | None = None) -> None:
        if not future.cancelled():
            super()._handle_exception_in_future(future, msg)

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.wait_for(
                super()._create_connection(*args, **kwargs), self.connect_timeout
            )
        except asyncio.TimeoutError:
            raise OSError(
                errno.ETIMEDOUT, f"no connection within {self.connect_timeout:g}s"
            ) from None


def _outcome_logger(log_outcome: Any) -> Any:
    """gmqtt's done-callback of the reconnects it starts, which asks a cancelled one for its
    exception: a node stopping while a reconnect waited logged a CancelledError traceback. A
    cancelled reconnect has nothing to say."""

    def logged(future: Any, msg: str | None = None) -> None:
        if not future.cancelled():
            log_outcome(future, msg)

    return logged


def new_client(
    system: str,
    node: str,
    broker: BrokerNode,
    *,
    persistent: bool,
    login: MqttLogin | None = None,
    session_expiry: int | None = None,
) -> gmqtt.Client:
    """A client for `broker`, logging in with `login`. With MQTT 5, a persistent client acknowledges
    each message when its handler returns (gmqtt acknowledges MQTT 3.1.1 messages on receipt,
    whatever the handler does).

    `session_expiry` (seconds) bounds how long the broker keeps a persistent session whose client
    is gone. A member of a shared subscription needs it: while the broker keeps a dead member's
    session, it goes on handing that session its share of the messages. MQTT 3.1.1 has no
    expiry, so such a client gets a clean session there."""
    identity = client_id(system, node, persistent, _tag(broker, login))
    if broker.protocol == "5":
        extra = {"session_expiry_interval": session_expiry or SESSION_FOREVER} if persistent else {}
        return _client(
            identity,
            broker,
            login,
            clean_session=not persistent,
            optimistic_acknowledgement=not persistent,
            **extra,
        )
    clean = not persistent or session_expiry is not None
    return _client(identity, broker, login, clean_session=clean)


async def discard_session(
    system: str,
    node: str,
    broker: BrokerNode,
    *,
    login: MqttLogin | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """End the persistent session the broker keeps for `node`'s client id, if it keeps one: a
    connection with that id and a clean session, closed at once (the broker drops the session
    and what it queued for it). Raises as `connect` does if the broker cannot be reached."""
    identity = client_id(system, node, True, _tag(broker, login))
    client = _client(identity, broker, login, clean_session=True)
    await connect(client, broker, tls=tls)
    await client.disconnect()


def _tag(broker: BrokerNode, login: MqttLogin | None) -> str:
    """The login's tag in client ids, only on the embedded broker: an external one keeps a
    writer's session across runs that may use another secret."""
    return login.tag if login is not None and not broker.external else ""


def _client(
    identity: str, broker: BrokerNode, login: MqttLogin | None, **options: Any
) -> BoundedClient:
    """A client with id `identity` and gmqtt's `options`, bounded by the broker's
    connect_timeout, logging in with `login`."""
    client = BoundedClient(identity, **options)
    client.connect_timeout = broker.connect_timeout
    if login is not None:
        client.set_auth_credentials(login.user, login.password)
    return client


async def connect(
    client: gmqtt.Client,
    broker: BrokerNode,
    *,
    attempts: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Connect (over TLS with `tls`), retrying while the broker is not there yet (after 0.1 s,
    then waits doubling up to the broker's reconnect_delay); gmqtt then reconnects for ever,
    every reconnect_delay."""
    address = broker.address
    version = MQTTv50 if broker.protocol == "5" else MQTTv311
    client.set_config({"reconnect_retries": -1, "reconnect_delay": broker.reconnect_delay})
    delay, attempt = 0.1, 0
    while True:
        attempt += 1
        try:
            await client.connect(
                address.connect_host,
                address.port,
                version=version,
                keepalive=keep_alive(broker),
                ssl=tls or False,
            )
            return
        except MQTTConnectError as exc:  # a refusal: retrying with the same login cannot help
            raise NodeError(
                f"MQTT broker {address.target} refused the connection: {exc}. The broker must know "
                "this node's user name (the node's name) and password (derived from the system "
                "secret); for an external broker, see `cqrs-flow mosquitto-auth`"
            ) from None
        except (OSError, asyncio.TimeoutError) as exc:
            if attempts is not None and attempt >= attempts:
                raise
            if attempt == 1 or attempt % 10 == 0:
                log.warning("MQTT broker %s not reachable (%s); retrying", address.target, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, broker.reconnect_delay)
