"""Last-will messages on the embedded broker: a will is a publish, and the login's ACL decides it.

A will's topic is checked at CONNECT against what the login may publish, and a CONNECT with a
will it may not publish is refused; the password is checked before the broker looks at sessions,
so a refused CONNECT touches no session (no take-over) and says nothing about one."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from system import System, acknowledged, prepare, wait_until

from cqrs_flow.contracts.ordering import CommandClock

ACCEPTED, NOT_AUTHORISED = 0, 5
SETTLE = 2.0  # the write delay (0.5 s) and then some: long enough for a will to take effect
STATUS = "query($id: String!) { commandStatus(id: $id) { state reason } }"


@pytest.fixture(scope="module")
def contacts(tmp_path_factory) -> System:
    """The contacts system, with a declared client that may only read the status topic."""
    system = System(
        prepare(
            "contacts_fast.yaml",
            tmp_path_factory.mktemp("wills"),
            **{"nodes.broker.clients.dashboard": {"subscribe": ["contacts-test/status"]}},
        )
    ).start()
    yield system
    system.stop()


def _add_request(system, name: str) -> tuple[str, bytes]:
    request_class = system.protos.message_class("contacts.AddContactRequest")
    request = request_class(command_id=CommandClock().next_id())
    request.contact.id, request.contact.name = f"will-{uuid.uuid4().hex[:12]}", name
    return request.contact.id, request.SerializeToString()


def _contact(system, contact_id: str):
    return system.data(f'{{ contact(id: "{contact_id}") {{ id name }} }}')["contact"]


def _status(system, command_id: str) -> dict:
    return system.data(STATUS, {"id": command_id})["commandStatus"]


def _added_contact(system, name: str) -> tuple[str, str]:
    """A contact added through the gateway and applied: its id and the command's id."""
    mutation = f'mutation {{ addContact(name: "{name}") {{ id command_id }} }}'
    answer = system.data(mutation)["addContact"]
    wait_until(lambda: _status(system, answer["command_id"])["state"] == "APPLIED")
    return answer["id"], answer["command_id"]


async def _connect_with_will(system, user: str, topic: str, payload: bytes) -> int:
    """Log in as `user` with a will on `topic`; if the broker accepts, drop the connection without
    DISCONNECT (which makes a broker publish the will). The CONNACK code."""
    broker = system.topology.nodes["broker"].listen
    client = gmqtt.Client(
        f"will-{user}-{uuid.uuid4().hex[:6]}", will_message=gmqtt.Message(topic, payload, qos=1)
    )
    login = system.mqtt_login(user)
    client.set_auth_credentials(login.user, login.password)
    try:
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
    except MQTTConnectError as refused:
        return refused._code
    client._connection._transport.abort()  # gone, without a word
    # The DISCONNECT this sends goes nowhere (the socket is closed); it stops gmqtt reconnecting.
    await client.disconnect()
    return ACCEPTED


def test_a_will_on_a_topic_the_login_may_not_publish_is_refused(contacts):
    """The writer may not publish commands: no will of its may delete a contact."""
    contact_id, _ = _added_contact(contacts, "Kept")
    delete = contacts.protos.message_class("contacts.DeleteContactRequest")(
        id=contact_id, command_id=CommandClock().next_id()
    )
    code = asyncio.run(
        _connect_with_will(contacts, "writer", "CONTACT/DELETE", delete.SerializeToString())
    )
    time.sleep(SETTLE)
    assert _contact(contacts, contact_id) == {"id": contact_id, "name": "Kept"}
    assert code == NOT_AUTHORISED
    contacts.wait_for_line(r"refused .*'writer'.* will .*CONTACT/DELETE")


def test_a_gateway_cannot_forge_a_status_report_by_its_will(contacts):
    _, command_id = _added_contact(contacts, "Applied")
    forged = json.dumps([{"id": command_id, "state": "FAILED", "reason": "forged"}]).encode()
    code = asyncio.run(_connect_with_will(contacts, "gateway", "contacts-test/status", forged))
    time.sleep(SETTLE)
    assert _status(contacts, command_id) == {"state": "APPLIED", "reason": None}
    assert code == NOT_AUTHORISED


def test_a_subscribe_only_client_cannot_add_a_contact_by_its_will(contacts):
    contact_id, payload = _add_request(contacts, "By Dashboard")
    code = asyncio.run(_connect_with_will(contacts, "dashboard", "CONTACT/ADD", payload))
    time.sleep(SETTLE)
    assert _contact(contacts, contact_id) is None
    assert code == NOT_AUTHORISED


def test_a_will_inside_the_access_list_is_published(contacts):
    """The gateway may publish CONTACT/ADD: its will goes out like any of its publishes."""
    contact_id, payload = _add_request(contacts, "By Will")
    assert asyncio.run(_connect_with_will(contacts, "gateway", "CONTACT/ADD", payload)) == ACCEPTED
    added = wait_until(lambda: _contact(contacts, contact_id))
    assert added == {"id": contact_id, "name": "By Will"}


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _connect_packet(client_id: str, will_topic: str, will_payload: bytes) -> bytes:
    """MQTT 3.1.1 CONNECT without user name or password, clean_session=0, a QoS 1 will."""
    flags = 0x04 | 0x08  # will flag, will QoS 1 (clean session bit 0x02 left unset)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c"
    body += _string(client_id.encode()) + _string(will_topic.encode()) + _string(will_payload)
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return b"\x10" + encoded + body


def test_no_login_takes_over_no_session(contacts):
    """A CONNECT without credentials, with the client id of a connected client, clean_session=0
    and a will: refused, with session-present 0; the connected client stays connected and no
    will is published."""
    contact_id, payload = _add_request(contacts, "Taken Over")

    async def scenario() -> tuple[bytes, bool, list[bytes]]:
        broker = contacts.topology.nodes["broker"].listen
        received: list[bytes] = []
        subscribed, dropped = asyncio.Event(), asyncio.Event()
        dashboard = contacts.mqtt_client("ops-dashboard", "dashboard")
        dashboard.set_config({"reconnect_retries": 0})
        dashboard.on_message = lambda c, topic, body, qos, props: received.append(body) or 0
        dashboard.on_subscribe = lambda *args: subscribed.set()
        dashboard.on_disconnect = lambda *args: dropped.set()
        await dashboard.connect(broker.connect_host, broker.port, version=MQTTv311)
        dashboard.subscribe("contacts-test/status", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)

        reader, writer = await asyncio.open_connection(broker.connect_host, broker.port)
        writer.write(_connect_packet("ops-dashboard", "CONTACT/ADD", payload))
        await writer.drain()
        connack = await asyncio.wait_for(reader.read(4), 5)
        writer.transport.abort()
        await asyncio.sleep(SETTLE)

        marker = f'[{{"id": "marker-{uuid.uuid4().hex}", "state": "APPLIED"}}]'.encode()
        observer = contacts.mqtt_client(f"marker-{uuid.uuid4().hex[:6]}")
        await observer.connect(broker.connect_host, broker.port, version=MQTTv311)
        observer.publish("contacts-test/status", marker, qos=1)
        await acknowledged(observer)
        await observer.disconnect()
        for _ in range(40):
            if marker in received or dropped.is_set():
                break
            await asyncio.sleep(0.05)
        still_connected = dashboard.is_connected and not dropped.is_set()
        if dashboard.is_connected:
            await dashboard.disconnect()
        return connack, still_connected, marker in received

    connack, still_connected, got_marker = asyncio.run(scenario())
    assert _contact(contacts, contact_id) is None
    assert connack == bytes([0x20, 0x02, 0x00, NOT_AUTHORISED])  # session-present 0
    assert still_connected and got_marker
    contacts.wait_for_line(r"refused MQTT login of an anonymous client")
