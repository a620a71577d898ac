"""examples/contacts-mosquitto: the contacts system on Debian's Mosquitto, an external broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid

import pytest
from gmqtt.mqtt.constants import MQTTv311
from system import EXAMPLES, System, acknowledged, cli, prepare, wait_until

from cqrs_flow.launcher.probes import CONNACK_REFUSALS, mqtt_connack_code
from cqrs_flow.security.mqtt_logins import MqttLogin

EXAMPLE = EXAMPLES / "contacts-mosquitto" / "topology.yaml"


@pytest.fixture(scope="module")
def on_mosquitto(mosquitto, tmp_path_factory) -> System:
    file = prepare(
        "topology.yaml",
        tmp_path_factory.mktemp("mosquitto-example"),
        source=EXAMPLE,
        **{
            "nodes.broker.url": f"mqtt://{mosquitto.target}",
            "nodes.writer.delay": "300ms",
            "nodes.store.list_limit": 5000,
        },
    )
    system = System(file).start()
    yield system
    system.stop()


def test_example_validates():
    proc = subprocess.run(
        [*cli(), "validate", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_up_does_not_start_an_external_broker(on_mosquitto, mosquitto):
    assert "waiting for broker (broker, external: mqtt://" in on_mosquitto.output()
    assert len(on_mosquitto.node_pids()) == 4  # store, reader, writer, gateway


def test_seed_operations_through_mosquitto(on_mosquitto, mosquitto):
    async def watch_and_add():
        seen = []
        client = on_mosquitto.mqtt_client(f"observer-{uuid.uuid4().hex[:6]}", "monitor")
        subscribed = asyncio.Event()
        client.on_message = lambda c, topic, payload, qos, props: seen.append(topic) or 0
        client.on_subscribe = lambda *args: subscribed.set()
        await client.connect(mosquitto.host, mosquitto.port, version=MQTTv311)
        client.subscribe("CONTACT/#", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        answer = await asyncio.to_thread(
            on_mosquitto.data, 'mutation { addContact(name: "John HUEBR") { status message id } }'
        )
        await asyncio.sleep(0.3)
        await client.disconnect()
        return answer["addContact"], seen

    answer, seen = asyncio.run(watch_and_add())
    assert answer["status"] == "OK" and seen == ["CONTACT/ADD"]
    contact_id = answer["id"]
    query = f'{{ contact(id: "{contact_id}") {{ name }} }}'
    assert wait_until(lambda: on_mosquitto.data(query)["contact"]) == {"name": "John HUEBR"}
    on_mosquitto.data(
        f'mutation {{ updateContact(id: "{contact_id}", name: "John HUEBR (2)") {{ status }} }}'
    )
    wait_until(lambda: on_mosquitto.data(query)["contact"] == {"name": "John HUEBR (2)"})
    on_mosquitto.data(f'mutation {{ deleteContact(id: "{contact_id}") {{ status }} }}')
    wait_until(lambda: on_mosquitto.data(query)["contact"] is None)


def test_a_qos1_burst_beyond_mosquittos_default_queue_is_applied_whole(on_mosquitto, mosquitto):
    """1,500 commands at once: more than Mosquitto's default queue (1,000) and in-flight window
    (20) would let through while the writer holds each for the delay."""
    request_class = on_mosquitto.protos.message_class("contacts.AddContactRequest")
    batch = uuid.uuid4().hex[:8]
    count = 1500

    async def burst():
        client = on_mosquitto.mqtt_client(f"burst-{batch}", "gateway")  # may publish commands
        await client.connect(mosquitto.host, mosquitto.port, version=MQTTv311)
        for i in range(count):
            request = request_class()
            request.contact.id, request.contact.name = f"{batch}-{i}", f"burst {i}"
            client.publish("CONTACT/ADD", request.SerializeToString(), qos=1)
        await acknowledged(client)
        await client.disconnect()

    asyncio.run(burst())

    def applied():
        contacts = on_mosquitto.data("{ listContacts(count: 5000) { id } }")["listContacts"]
        return sum(1 for c in contacts if c["id"].startswith(batch))

    assert wait_until(lambda: applied() == count and count, timeout=60) == count


@pytest.mark.parametrize(
    "login", [None, MqttLogin("gateway", "not-the-password"), MqttLogin("intruder", "x" * 64)]
)
def test_mosquitto_refuses_wrong_or_missing_credentials(on_mosquitto, mosquitto, login):
    assert asyncio.run(mqtt_connack_code(mosquitto, login)) in CONNACK_REFUSALS
    assert asyncio.run(mqtt_connack_code(mosquitto, on_mosquitto.mqtt_login("monitor"))) == 0


def test_mosquitto_enforces_the_generated_acl(on_mosquitto, mosquitto):
    """Mosquitto 2.0 closes the connection of a 3.1.1 client that publishes outside its ACL and
    drops the message. It grants any subscription but delivers only what the ACL lets the user
    read: a client logged in as the gateway and subscribed to everything gets no command."""

    async def scenario():
        seen, spied, subscribed, control, dropped = (
            [],
            [],
            asyncio.Event(),
            asyncio.Event(),
            asyncio.Event(),
        )
        marker = f"control-{uuid.uuid4().hex}".encode()

        def on_message(client, topic, payload, qos, properties):
            seen.append((topic, payload))
            if payload == marker:
                control.set()
            return 0

        async def connect(name: str, user: str):
            client = on_mosquitto.mqtt_client(f"{name}-{uuid.uuid4().hex[:6]}", user)
            client.on_subscribe = lambda *args: subscribed.set()
            await client.connect(mosquitto.host, mosquitto.port, version=MQTTv311)
            return client

        monitor = await connect("monitor", "monitor")
        monitor.on_message = on_message
        monitor.subscribe("#", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        subscribed.clear()
        spy = await connect("spy", "gateway")
        spy.on_message = lambda client, topic, payload, qos, properties: (
            spied.append((topic, payload)) or 0
        )
        spy.subscribe("#", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)

        forger = await connect("forger", "gateway")
        forger.on_disconnect = lambda *args: dropped.set()
        forger.publish(
            "contacts-mosquitto/status", b'[{"command_id": "forged", "status": "APPLIED"}]', qos=1
        )
        await asyncio.wait_for(dropped.wait(), 5)
        await forger.disconnect()

        publisher = await connect("publisher", "gateway")
        publisher.publish(
            "CONTACT/ADD", marker, qos=1
        )  # allowed; the writer sets the garbage aside
        await acknowledged(publisher)
        await asyncio.wait_for(control.wait(), 10)
        await asyncio.sleep(0.3)  # time for the spy to get it too, if Mosquitto let it
        for client in (publisher, monitor, spy):
            await client.disconnect()
        return seen, spied, marker

    seen, spied, marker = asyncio.run(scenario())
    assert ("CONTACT/ADD", marker) in seen
    assert not any(b"forged" in payload for _, payload in seen), seen
    assert not any(topic != "contacts-mosquitto/status" for topic, _ in spied), spied


def test_up_stops_at_once_when_the_broker_does_not_know_the_nodes(mosquitto, tmp_path):
    """A secret other than the one the password file was written with: the readiness probe's
    login is refused, and `up` says so instead of starting nodes that cannot connect."""
    file = prepare(
        "topology.yaml",
        tmp_path,
        source=EXAMPLE,
        **{"nodes.broker.url": f"mqtt://{mosquitto.target}"},
    )
    proc = subprocess.run(
        [*cli(), "up", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CQRS_FLOW_SECRET": "not-the-secret-of-the-password-file"},
    )
    assert proc.returncode == 1, proc.stdout
    assert "refused the login of node 'gateway' (not authorised)" in proc.stdout
    assert "cqrs-flow mosquitto-auth" in proc.stdout
