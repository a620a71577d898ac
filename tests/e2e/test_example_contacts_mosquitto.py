"""examples/contacts-mosquitto: the contacts system on Debian's Mosquitto, an external broker."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv311

from system import EXAMPLES, System, acknowledged, cli, prepare, wait_until

EXAMPLE = EXAMPLES / "contacts-mosquitto" / "topology.yaml"


@pytest.fixture(scope="module")
def on_mosquitto(mosquitto, tmp_path_factory) -> System:
    file = prepare("topology.yaml", tmp_path_factory.mktemp("mosquitto-example"), source=EXAMPLE, **{
        "nodes.broker.url": f"mqtt://{mosquitto.target}",
        "nodes.writer.delay": "300ms",
        "nodes.store.list_limit": 5000,
    })
    system = System(file).start()
    yield system
    system.stop()


def test_example_validates():
    proc = subprocess.run([*cli(), "validate", str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_up_does_not_start_an_external_broker(on_mosquitto, mosquitto):
    assert "waiting for broker (broker, external: mqtt://" in on_mosquitto.output()
    assert len(on_mosquitto.node_pids()) == 4  # store, reader, writer, gateway


def test_seed_operations_through_mosquitto(on_mosquitto, mosquitto):
    async def watch_and_add():
        seen = []
        client = gmqtt.Client(f"observer-{uuid.uuid4().hex[:6]}")
        subscribed = asyncio.Event()
        client.on_message = lambda c, topic, payload, qos, props: seen.append(topic) or 0
        client.on_subscribe = lambda *args: subscribed.set()
        await client.connect(mosquitto.host, mosquitto.port, version=MQTTv311)
        client.subscribe("CONTACT/#", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        answer = await asyncio.to_thread(
            on_mosquitto.data, 'mutation { addContact(name: "John HUEBR") { status message id } }')
        await asyncio.sleep(0.3)
        await client.disconnect()
        return answer["addContact"], seen

    answer, seen = asyncio.run(watch_and_add())
    assert answer["status"] == "OK" and seen == ["CONTACT/ADD"]
    contact_id = answer["id"]
    query = f'{{ contact(id: "{contact_id}") {{ name }} }}'
    assert wait_until(lambda: on_mosquitto.data(query)["contact"]) == {"name": "John HUEBR"}
    on_mosquitto.data(f'mutation {{ updateContact(id: "{contact_id}", name: "John HUEBR (2)") {{ status }} }}')
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
        client = gmqtt.Client(f"burst-{batch}")
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
