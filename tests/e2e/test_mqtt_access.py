"""The embedded broker lets in only the system's users, and each only to its topics."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import psutil
import pytest
from gmqtt.mqtt.constants import MQTTv311
from system import acknowledged, wait_until

from cqrs_flow.launcher.probes import mqtt_connack_code
from cqrs_flow.security.mqtt_logins import MqttLogin

ACCEPTED, NOT_AUTHORISED, SUBSCRIPTION_REFUSED = 0, 5, 0x80


@pytest.mark.parametrize(
    "login",
    [
        None,
        MqttLogin("gateway", "not-the-password"),
        MqttLogin("intruder", "x" * 64),
        MqttLogin("observer", ""),
    ],
)
def test_wrong_or_missing_credentials_are_refused(contacts, login):
    address = contacts.topology.nodes["broker"].listen
    assert asyncio.run(mqtt_connack_code(address, login)) == NOT_AUTHORISED
    assert asyncio.run(mqtt_connack_code(address, contacts.mqtt_login("gateway"))) == ACCEPTED


async def _subscribe(system, user: str, topic_filter: str) -> tuple[int, ...]:
    """The SUBACK codes the broker answers `user` subscribing to `topic_filter`."""
    broker = system.topology.nodes["broker"].listen
    client = system.mqtt_client(f"subscribe-{user}-{uuid.uuid4().hex[:6]}", user)
    answered: asyncio.Future = asyncio.get_running_loop().create_future()
    client.on_subscribe = lambda client, mid, codes, properties: answered.set_result(codes)
    await client.connect(broker.connect_host, broker.port, version=MQTTv311)
    try:
        client.subscribe(topic_filter, qos=1)
        return tuple(await asyncio.wait_for(answered, 5))
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    "user, topic_filter",
    [
        ("writer", "#"),  # a writer reads only the commands it applies
        ("writer", "contacts-test/status"),  # ... not the status reports of other writers
        ("gateway", "CONTACT/ADD"),  # a gateway publishes commands, it does not read them
        ("gateway", "CONTACT/+"),
    ],
)
def test_a_subscription_outside_the_access_list_is_refused(contacts, user, topic_filter):
    assert asyncio.run(_subscribe(contacts, user, topic_filter)) == (SUBSCRIPTION_REFUSED,)


@pytest.mark.parametrize(
    "user, topic_filter", [("writer", "CONTACT/ADD"), ("gateway", "contacts-test/status")]
)
def test_a_subscription_inside_the_access_list_is_granted(contacts, user, topic_filter):
    assert asyncio.run(_subscribe(contacts, user, topic_filter)) == (1,)


def test_a_publish_outside_the_access_list_reaches_no_one(contacts):
    """MQTT 3.1.1 cannot refuse a publish: the broker acknowledges it and drops it. An observer
    subscribed to everything gets the gateway's allowed publish, sent last, and none before it."""

    async def scenario() -> list[tuple[str, bytes]]:
        broker = contacts.topology.nodes["broker"].listen
        seen: list[tuple[str, bytes]] = []
        subscribed, control = asyncio.Event(), asyncio.Event()
        marker = f"control-{uuid.uuid4().hex}".encode()

        def on_message(client, topic, payload, qos, properties):
            seen.append((topic, payload))
            if payload == marker:
                control.set()
            return 0

        observer = contacts.mqtt_client(f"observer-{uuid.uuid4().hex[:6]}")
        observer.on_message = on_message
        observer.on_subscribe = lambda *args: subscribed.set()
        await observer.connect(broker.connect_host, broker.port, version=MQTTv311)
        observer.subscribe("#", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)

        gateway = contacts.mqtt_client(f"forger-{uuid.uuid4().hex[:6]}", "gateway")
        await gateway.connect(broker.connect_host, broker.port, version=MQTTv311)
        gateway.publish(
            "contacts-test/status", b'[{"command_id": "forged", "status": "APPLIED"}]', qos=1
        )
        gateway.publish("CONTACT/FORGED", b"forged", qos=1)
        gateway.publish("contacts-test/dead-letter", b"forged", qos=1)
        gateway.publish("CONTACT/ADD", marker, qos=1)  # allowed; the writer sets the garbage aside
        await acknowledged(gateway)
        await asyncio.wait_for(control.wait(), 10)
        await gateway.disconnect()
        await observer.disconnect()
        return seen, marker

    seen, marker = asyncio.run(scenario())
    assert ("CONTACT/ADD", marker) in seen
    assert not any(b"forged" in payload for _, payload in seen), seen


def _string(value: str) -> bytes:
    return len(value.encode()).to_bytes(2, "big") + value.encode()


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def _broker_process(system) -> psutil.Process:
    (pid,) = [
        pid
        for pid in system.node_pids()
        if b"broker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]
    return psutil.Process(pid)


def test_a_publish_over_the_brokers_packet_limit_closes_the_connection_unread(contacts):
    """A raw client logged in sends a 20 MiB PUBLISH: the broker reads its header, closes the
    connection and logs it once, without reading (and holding) the payload."""
    address = contacts.topology.nodes["broker"].listen
    broker = _broker_process(contacts)
    rss_before = broker.memory_info().rss
    login = contacts.mqtt_login("observer")
    client_id = f"big-{uuid.uuid4().hex[:6]}"
    body = (
        b"\x00\x04MQTT\x04\xc2\x00\x3c"  # MQTT 3.1.1, user name, password, clean session
        + _string(client_id)
        + _string(login.user)
        + _string(login.password)
    )
    size = 20 * 1024 * 1024
    sent = 0
    with socket.create_connection((address.connect_host, address.port), timeout=10) as sock:
        sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK: accepted
        chunk = b"\0" * 65536
        try:
            sock.sendall(b"\x30" + _remaining_length(2 + 11 + size) + _string("CONTACT/ADD"))
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
            closed = sock.recv(1) == b""  # everything went: the broker should have closed
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except TimeoutError:
            closed = False
    assert closed and sent < size, f"the broker took {sent} bytes and kept the connection"
    line = contacts.wait_for_line(f"closed the connection of 'observer' \\(client id '{client_id}'")
    assert (
        f"a PUBLISH packet of {2 + 11 + size} bytes, over the broker's limit of "
        f"{1_398_104 + 256 * 1024} bytes" in line
    )
    assert (
        sum(client_id in line and "over the broker's limit" in line for line in contacts.lines) == 1
    )
    assert broker.memory_info().rss - rss_before < 10 * 1024 * 1024  # 30 MB more before
    gateway = contacts.mqtt_login("gateway")  # the probe's client id was the gateway's above
    assert asyncio.run(mqtt_connack_code(address, gateway)) == ACCEPTED  # the broker goes on


def _connack(address, login, client_id: str) -> bytes:
    """The CONNACK of a raw MQTT 3.1.1 CONNECT with clean_session=0; then a DISCONNECT."""
    body = (
        b"\x00\x04MQTT\x04\xc0\x00\x3c"  # user name, password, clean_session=0
        + _string(client_id)
        + _string(login.user)
        + _string(login.password)
    )
    with socket.create_connection((address.connect_host, address.port), timeout=10) as sock:
        sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        connack = sock.recv(4)
        sock.sendall(b"\xe0\x00")
    return connack


def test_a_user_cannot_grow_the_broker_with_new_persistent_sessions(contacts):
    """A declared client logging in with ever new client ids and clean_session=0 keeps at most
    10 persistent sessions: each new one replaces the one disconnected longest ago."""
    address = contacts.topology.nodes["broker"].listen
    login = contacts.mqtt_login("observer")
    ids = [f"persistent-{uuid.uuid4().hex[:6]}-{i}" for i in range(12)]
    for client_id in ids:
        assert _connack(address, login, client_id) == b"\x20\x02\x00\x00"
    contacts.wait_for_line(f"deleted the persistent session '{ids[1]}' of 'observer'")
    assert _connack(address, login, ids[-1]) == b"\x20\x02\x01\x00"  # kept: session present
    assert _connack(address, login, ids[0]) == b"\x20\x02\x00\x00"  # replaced: none
    added = contacts.data('mutation { addContact(name: "After Sessions") { status id } }')
    query = f'{{ contact(id: "{added["addContact"]["id"]}") {{ name }} }}'
    assert wait_until(lambda: contacts.data(query)["contact"]) == {"name": "After Sessions"}


@pytest.mark.parametrize(
    "protocol, version",
    [(b"\x00\x04MQTT\x05", "MQTT 5"), (b"\x00\x06MQIsdp\x03", "MQTT 3.1")],
    ids=["mqtt5", "mqtt31"],
)
def test_a_connect_of_mqtt_5_or_3_1_gets_connack_1_at_once(contacts, protocol, version):
    """An MQTT 5 client (mosquitto_sub -V mqttv5, paho, MQTTX) waited for a CONNACK until its
    own timeout, an MQTT 3.1 one was dropped unanswered: both are told at once that the protocol
    version is not accepted (CONNACK 1), with one line in the log and no traceback."""
    address = contacts.topology.nodes["broker"].listen
    login = contacts.mqtt_login("observer")
    client_id = f"old-or-new-{uuid.uuid4().hex[:6]}"
    properties = b"\x00" if version == "MQTT 5" else b""  # MQTT 5: an empty property list
    body = (
        protocol
        + b"\xc2\x00\x3c"
        + properties
        + _string(client_id)
        + _string(login.user)
        + _string(login.password)
    )
    with socket.create_connection((address.connect_host, address.port), timeout=5) as sock:
        sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        assert sock.recv(4) == b"\x20\x02\x00\x01"  # CONNACK: unacceptable protocol version
        assert sock.recv(1) == b""  # then closed
    line = contacts.wait_for_line(f"refused the CONNECT from .*: {version}; ")
    assert "speaks MQTT 3.1.1 only" in line
    assert not any("Traceback" in line for line in contacts.lines)
    gateway = contacts.mqtt_login("gateway")
    assert asyncio.run(mqtt_connack_code(address, gateway)) == ACCEPTED  # the broker goes on
