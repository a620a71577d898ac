"""Routing by editing YAML: topics, several writers with their own delays, readers and gateways."""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial

import pytest
from gmqtt.mqtt.constants import MQTTv311
from system import EACH_COMMAND, System, prepare, wait_until


def observe(system: System, topic_filter: str, action):
    """Run `action` (in a thread) while an independent MQTT client records the topics it sees."""

    async def scenario():
        seen: list[str] = []
        broker = system.topology.nodes["broker"].listen
        client = system.mqtt_client(f"observer-{uuid.uuid4().hex[:6]}")
        subscribed = asyncio.Event()
        client.on_message = lambda c, topic, payload, qos, props: seen.append(topic) or 0
        client.on_subscribe = lambda *args: subscribed.set()
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
        client.subscribe(topic_filter, qos=1)
        await asyncio.wait_for(subscribed.wait(), 5)
        result = await asyncio.to_thread(action)
        await asyncio.sleep(0.3)
        await client.disconnect()
        return result, seen

    return asyncio.run(scenario())


def test_editing_a_topic_in_the_yaml_reroutes_publisher_and_writer(tmp_path):
    file = prepare("contacts_fast.yaml", tmp_path, **{"commands.add_contact.topic": "PEOPLE/NEW"})
    system = System(file).start()
    try:
        answer, seen = observe(
            system,
            "#",
            lambda: system.data('mutation { addContact(name: "Rerouted") { status id } }')[
                "addContact"
            ],
        )
        assert answer["status"] == "OK"
        assert seen == ["PEOPLE/NEW"]  # and nothing on CONTACT/ADD any more
        query = f'{{ contact(id: "{answer["id"]}") {{ name }} }}'
        assert wait_until(lambda: system.data(query)["contact"]) == {"name": "Rerouted"}
        assert "subscribed to PEOPLE/NEW, CONTACT/UPDATE, CONTACT/DELETE" in system.output()
    finally:
        system.stop()


@pytest.fixture(scope="module")
def routed(tmp_path_factory) -> System:
    system = System(
        prepare("routed.yaml", tmp_path_factory.mktemp("routed")), env=EACH_COMMAND
    ).start()
    yield system
    system.stop()


def test_each_writer_applies_its_own_commands_with_its_own_delay(routed):
    added = routed.data('mutation { addContact(name: "Routed") { id } }', gateway="gateway")
    contact_id = added["addContact"]["id"]
    query = f'{{ contact(id: "{contact_id}") {{ name }} }}'
    wait_until(lambda: routed.data(query, gateway="gateway_b")["contact"], timeout=5)
    routed.wait_for_line(rf"writer_main .*applied add_contact {contact_id}")

    answer, seen = observe(
        routed,
        "contacts/#",
        lambda: routed.data(
            f'mutation {{ deleteContact(id: "{contact_id}") {{ status }} }}', gateway="gateway_b"
        ),
    )
    deleted_at = time.monotonic()
    assert answer["deleteContact"]["status"] == "OK" and seen == ["contacts/slow/delete"]
    time.sleep(max(0.0, 0.9 - (time.monotonic() - deleted_at)))
    assert routed.data(query)["contact"] == {"name": "Routed"}, (
        "deleted before the slow writer's delay"
    )
    wait_until(lambda: routed.data(query)["contact"] is None, timeout=5)
    routed.wait_for_line(rf"writer_slow .*applied delete_contact {contact_id}")
    assert not any(
        "writer_main " in line and f"applied delete_contact {contact_id}" in line
        for line in routed.output().splitlines()
    )


def test_both_gateways_read_through_their_own_reader(routed):
    contact_id = routed.data('mutation { addContact(name: "Both") { id } }', gateway="gateway_b")[
        "addContact"
    ]["id"]

    def reversed_name(gateway: str) -> str | None:
        return routed.data(f'{{ reversedName(id: "{contact_id}") }}', gateway=gateway)[
            "reversedName"
        ]

    for gateway in ("gateway", "gateway_b"):
        assert wait_until(partial(reversed_name, gateway)) == "htoB"
