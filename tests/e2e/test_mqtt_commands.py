"""Commands on the wire, seen and sent by an independent MQTT client."""

from __future__ import annotations

import asyncio
import uuid

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from system import acknowledged, wait_until

from cqrs_flow.contracts.ordering import CommandClock


async def _connect(system, name: str) -> gmqtt.Client:
    broker = system.topology.nodes["broker"].listen
    client = system.mqtt_client(f"test-{name}-{uuid.uuid4().hex[:6]}")
    await client.connect(broker.connect_host, broker.port, version=MQTTv311)
    return client


def test_mutation_publishes_the_protobuf_request_on_its_topic(contacts):
    async def scenario():
        received: list[tuple[str, bytes]] = []
        subscribed = asyncio.Event()
        client = await _connect(contacts, "observer")
        client.on_message = lambda c, topic, payload, qos, props: (
            received.append((topic, payload)) or 0
        )
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe("CONTACT/#", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        answer = await asyncio.to_thread(
            contacts.data, 'mutation { addContact(name: "On The Wire") { status id } }'
        )
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
        await client.disconnect()
        return answer["addContact"], received

    answer, received = asyncio.run(scenario())
    assert answer["status"] == "OK"
    assert [topic for topic, _ in received] == ["CONTACT/ADD"]
    request = contacts.protos.message_class("contacts.AddContactRequest").FromString(received[0][1])
    assert request.contact.name == "On The Wire"
    assert request.contact.id == answer["id"]


def test_writer_sets_aside_garbage_and_applies_the_next_command(contacts):
    request_class = contacts.protos.message_class("contacts.AddContactRequest")
    good = request_class()
    good.contact.id = f"direct-{uuid.uuid4()}"
    good.contact.name = "Published directly"

    async def publish():
        client = await _connect(contacts, "publisher")
        client.publish("CONTACT/ADD", b"\xff\xff\xff not a protobuf", qos=1)
        client.publish("CONTACT/DELETE", b"\x0a\x05", qos=1)  # truncated field
        client.publish("CONTACT/ADD", good.SerializeToString(), qos=1)
        await acknowledged(client)
        await client.disconnect()

    asyncio.run(publish())
    query = f'{{ contact(id: "{good.contact.id}") {{ name }} }}'
    assert wait_until(lambda: contacts.data(query)["contact"]) == {"name": "Published directly"}
    contacts.wait_for_line(
        r"writer .*set aside: add_contact on CONTACT/ADD: not a valid contacts.AddContactRequest"
    )
    contacts.wait_for_line(r"writer .*set aside: delete_contact on CONTACT/DELETE: not a valid")
    assert contacts.process.poll() is None


def test_commands_on_one_entity_take_effect_in_the_order_of_their_ids(contacts):
    """A command published again late (as a gateway's outbox does after a broker crash) must not
    undo a newer one; one delivered twice is applied once."""
    message = contacts.protos.message_class
    key = f"ordered-{uuid.uuid4().hex[:8]}"
    clock = CommandClock()
    add_id, older_id, newer_id = clock.next_id(), clock.next_id(), clock.next_id()

    def update(name: str, command_id: str) -> bytes:
        request = message("contacts.UpdateContactRequest")(command_id=command_id)
        request.contact.id, request.contact.name = key, name
        return request.SerializeToString()

    add = message("contacts.AddContactRequest")(command_id=add_id)
    add.contact.id, add.contact.name = key, "Added"

    async def publish():
        client = await _connect(contacts, "reorder")
        client.publish("CONTACT/ADD", add.SerializeToString(), qos=1)
        client.publish("CONTACT/UPDATE", update("Newer", newer_id), qos=1)
        client.publish(
            "CONTACT/UPDATE", update("Older", older_id), qos=1
        )  # accepted before "Newer"
        client.publish("CONTACT/ADD", add.SerializeToString(), qos=1)  # delivered again
        await acknowledged(client)
        await client.disconnect()

    asyncio.run(publish())
    contacts.wait_for_line(
        rf"store .*command {older_id} on contact {key}: not applied \(it is older than {newer_id}\)"
    )
    contacts.wait_for_line(rf"store .*command {add_id} .*was applied before")
    assert contacts.data(f'{{ contact(id: "{key}") {{ name }} }}')["contact"] == {"name": "Newer"}
    # Writers report every command they carried out, the stale ones too (their effect is there).

    def states() -> set[str]:
        return {
            contacts.data(f'{{ commandStatus(id: "{c}") {{ state }} }}')["commandStatus"]["state"]
            for c in (add_id, older_id, newer_id)
        }

    assert wait_until(lambda: states() == {"APPLIED"})
