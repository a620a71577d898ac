"""Read-your-writes: a mutation's command id, commandStatus, and the dead-letter topic."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

from gmqtt.mqtt.constants import MQTTv311
from system import acknowledged, wait_until

STATUS = "query($id: String!) { commandStatus(id: $id) { id state command key reason } }"


def status(system, command_id):
    return system.data(STATUS, {"id": command_id})["commandStatus"]


def test_a_command_is_queued_then_applied(contacts):
    answer = contacts.data('mutation { addContact(name: "Status") { status id command_id } }')[
        "addContact"
    ]
    command_id, contact_id = answer["command_id"], answer["id"]
    assert answer["status"] == "OK" and uuid.UUID(command_id)
    assert status(contacts, command_id) == {
        "id": command_id,
        "state": "QUEUED",
        "command": "add_contact",
        "key": contact_id,
        "reason": None,
    }
    applied = wait_until(lambda: (s := status(contacts, command_id))["state"] == "APPLIED" and s)
    assert applied["key"] == contact_id
    assert contacts.data(f'{{ contact(id: "{contact_id}") {{ name }} }}')["contact"] == {
        "name": "Status"
    }


def test_an_unknown_command_id_is_null(contacts):
    assert status(contacts, "no-such-command") is None


def test_a_refused_command_fails_with_its_reason_and_goes_to_the_dead_letter_topic(contacts):
    contact_id = contacts.data('mutation { addContact(name: "Doomed") { id } }')["addContact"]["id"]
    wait_until(lambda: contacts.data(f'{{ contact(id: "{contact_id}") {{ id }} }}')["contact"])

    async def scenario():
        letters = []
        broker = contacts.topology.nodes["broker"].listen
        client = contacts.mqtt_client(f"dead-letters-{uuid.uuid4().hex[:6]}")
        subscribed = asyncio.Event()
        client.on_message = lambda c, topic, payload, qos, props: (
            letters.append(json.loads(payload)) or 0
        )
        client.on_subscribe = lambda *args: subscribed.set()
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
        client.subscribe("contacts-test/dead-letter", qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        # The delete is queued first, so the update that follows finds nothing to update.
        await asyncio.to_thread(
            contacts.data, f'mutation {{ deleteContact(id: "{contact_id}") {{ status }} }}'
        )
        update = await asyncio.to_thread(
            contacts.data,
            f'mutation {{ updateContact(id: "{contact_id}", name: "Too late") '
            "{ status command_id } }",
        )
        client.publish("CONTACT/ADD", b"\xff\xfe garbage", qos=1)
        await acknowledged(client)
        for _ in range(100):
            if len(letters) >= 2:
                break
            await asyncio.sleep(0.05)
        await client.disconnect()
        return update["updateContact"], letters

    update, letters = asyncio.run(scenario())
    assert update["status"] == "OK"
    failed = wait_until(
        lambda: (s := status(contacts, update["command_id"]))["state"] == "FAILED" and s
    )
    assert failed["reason"].startswith("refused by the store: NOT_FOUND")

    by_command = {letter["command"]: letter for letter in letters}
    refused = by_command["update_contact"]
    assert refused["command_id"] == update["command_id"] and refused["key"] == contact_id
    assert refused["topic"] == "CONTACT/UPDATE" and "NOT_FOUND" in refused["reason"]
    original = contacts.protos.message_class("contacts.UpdateContactRequest").FromString(
        base64.b64decode(refused["payload"])
    )
    assert original.contact.name == "Too late"
    garbage = by_command["add_contact"]
    assert base64.b64decode(garbage["payload"]) == b"\xff\xfe garbage"
    assert "not a valid contacts.AddContactRequest" in garbage["reason"]
