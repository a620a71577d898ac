"""The embedded broker lets in only the system's users, and each only to its topics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from gmqtt.mqtt.constants import MQTTv311
from system import acknowledged

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
