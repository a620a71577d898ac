"""Commands on the wire, seen and sent by an independent MQTT client."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from system import acknowledged, wait_until

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.transport.command_batches import is_batch, pack, unpack


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


def test_a_burst_of_mutations_goes_to_the_writer_several_commands_to_a_message(contacts):
    """Commands accepted in one turn of the gateway's loop are published as one message
    (transport/command_batches.py); each reaches the writer once and is applied."""
    request_class = contacts.protos.message_class("contacts.AddContactRequest")
    count = 50

    async def scenario():
        received: list[bytes] = []
        subscribed = asyncio.Event()
        client = await _connect(contacts, "burst")
        client.on_message = lambda c, topic, payload, qos, props: received.append(payload) or 0
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe("CONTACT/ADD", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        url = f"http://{contacts.gateway.listen.target}/graphql"
        query = "mutation Add($name: String!) { addContact(name: $name) { status id } }"
        async with aiohttp.ClientSession() as http:

            async def add(i: int) -> dict:
                variables = {"name": f"Burst {i}"}
                async with http.post(url, json={"query": query, "variables": variables}) as r:
                    return (await r.json())["data"]["addContact"]

            answers = await asyncio.gather(*(add(i) for i in range(count)))
        for _ in range(100):
            if sum(len(unpack(p)) if is_batch(p) else 1 for p in received) >= count:
                break
            await asyncio.sleep(0.05)
        await client.disconnect()
        return answers, received

    answers, received = asyncio.run(scenario())
    assert all(a["status"] == "OK" for a in answers)
    commands = [
        request_class.FromString(c) for p in received for c in (unpack(p) if is_batch(p) else [p])
    ]
    assert sorted(c.contact.id for c in commands) == sorted(a["id"] for a in answers)  # each once
    assert len(received) < count  # some went several to a message
    for answer in answers:
        query = f'{{ contact(id: "{answer["id"]}") {{ id }} }}'
        assert wait_until(lambda q=query: contacts.data(q)["contact"]) == {"id": answer["id"]}


def test_a_batch_a_client_publishes_is_applied_command_by_command(contacts):
    """A bad command in a batch is set aside alone; the others are applied."""
    request_class = contacts.protos.message_class("contacts.AddContactRequest")
    good = []
    for name in ("Batched first", "Batched second"):
        request = request_class()
        request.contact.id, request.contact.name = f"batched-{uuid.uuid4()}", name
        good.append(request)
    batch = pack([good[0].SerializeToString(), b"\x0a\xff", good[1].SerializeToString()])

    async def publish():
        client = await _connect(contacts, "batcher")
        client.publish("CONTACT/ADD", batch, qos=1)
        await acknowledged(client)
        await client.disconnect()

    asyncio.run(publish())
    for request in good:
        query = f'{{ contact(id: "{request.contact.id}") {{ name }} }}'
        assert wait_until(lambda q=query: contacts.data(q)["contact"]) == {
            "name": request.contact.name
        }
    contacts.wait_for_line(
        r"writer .*set aside: add_contact on CONTACT/ADD: not a valid contacts.AddContactRequest "
        r"\(2 bytes\)"
    )
    assert contacts.process.poll() is None
