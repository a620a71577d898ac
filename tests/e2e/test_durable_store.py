"""A store with `data:` keeps every write it acknowledged through a kill -9 and `up`'s restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid

from gmqtt.mqtt.constants import MQTTv311
from system import EACH_COMMAND, System, acknowledged, prepare, wait_until
from test_up_lifecycle import node_pid

from cqrs_flow.contracts.ordering import CommandClock

COMMANDS = 300
KILL_AT = 120  # commands published before the store is killed


def applied(system: System) -> list[str]:
    """Ids of the add_contact commands the writer reported applied, in order."""
    return [
        m.group(1)
        for line in list(system.lines)
        if (m := re.search(r"applied add_contact (\S+)", line))
    ]


def test_acknowledged_writes_survive_a_kill_9_of_the_store(tmp_path):
    # `data` is relative to the topology file, which prepare() writes into tmp_path.
    system = System(
        prepare("contacts_fast.yaml", tmp_path, **{"nodes.store.data": "store-data"}),
        env=EACH_COMMAND,
    ).start()
    request_class = system.protos.message_class("contacts.AddContactRequest")
    published: list[str] = []
    before_kill: list[str] = []

    async def publish() -> None:
        broker = system.topology.nodes["broker"].listen
        client = system.mqtt_client(f"test-durable-{uuid.uuid4().hex[:6]}")
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
        for i in range(COMMANDS):
            if i == KILL_AT:
                before_kill.extend(applied(system))
                os.kill(node_pid(system, "store"), signal.SIGKILL)
            command = request_class()
            command.contact.id = f"durable-{i:03d}-{uuid.uuid4().hex[:8]}"
            command.contact.name = f"Contact {i}"
            client.publish("CONTACT/ADD", command.SerializeToString(), qos=1)
            published.append(command.contact.id)
            await asyncio.sleep(0.01)
        await acknowledged(client)
        await client.disconnect()

    try:
        asyncio.run(publish())
        system.wait_for_line(r"node 'store' exited with status -9; restarting it")
        assert len(before_kill) >= 30, "the store was killed before the writer had applied much"
        # The writer retries what the store did not answer; in the end every command is applied.
        wait_until(lambda: set(applied(system)) >= set(published), timeout=15)
        assert sum("cqrs-flow | store ready in" in line for line in system.lines) == 2
        loaded = [
            int(m.group(1))
            for line in system.lines
            if (m := re.search(r"store .*data in .*store-data: (\d+) documents", line))
        ]
        assert loaded[0] == 0 and loaded[1] >= len(before_kill)  # the restart found them

        stored = {
            c["id"]
            for c in system.data(f"{{ listContacts(count: {COMMANDS + 10}) {{ id }} }}")[
                "listContacts"
            ]
        }
        assert set(before_kill) <= stored, sorted(set(before_kill) - stored)
        assert set(applied(system)) <= stored
        assert stored == set(published)
        assert (tmp_path / "store-data" / "store.db").exists()
    finally:
        assert system.stop() == 0


def test_a_restarted_store_still_applies_each_command_once_and_in_order(tmp_path):
    """Each key's last command id is in the database (and the answers to recent commands in
    <data>/applied/), so commands delivered again after the restart change nothing."""
    system = System(
        prepare("contacts_fast.yaml", tmp_path, **{"nodes.store.data": "store-data"})
    ).start()
    message = system.protos.message_class
    clock = CommandClock()
    key = f"once-{uuid.uuid4().hex[:8]}"
    add = message("contacts.AddContactRequest")(command_id=clock.next_id())
    add.contact.id, add.contact.name = key, "First"
    update = message("contacts.UpdateContactRequest")(command_id=clock.next_id())
    update.contact.id, update.contact.name = key, "Second"

    def name() -> str | None:
        return (system.data(f'{{ contact(id: "{key}") {{ name }} }}')["contact"] or {}).get("name")

    async def publish(*commands: tuple[str, bytes]) -> None:
        broker = system.topology.nodes["broker"].listen
        client = system.mqtt_client(f"test-once-{uuid.uuid4().hex[:6]}")
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
        for topic, payload in commands:
            client.publish(topic, payload, qos=1)
        await acknowledged(client)
        await client.disconnect()

    try:
        asyncio.run(
            publish(
                ("CONTACT/ADD", add.SerializeToString()),
                ("CONTACT/UPDATE", update.SerializeToString()),
            )
        )
        assert wait_until(lambda: name() == "Second")
        os.kill(node_pid(system, "store"), signal.SIGKILL)
        wait_until(
            lambda: sum("cqrs-flow | store ready in" in line for line in system.lines) == 2,
            timeout=15,
        )
        asyncio.run(
            publish(
                ("CONTACT/UPDATE", update.SerializeToString()),
                ("CONTACT/ADD", add.SerializeToString()),
            )
        )
        system.wait_for_line(
            rf"store .*command {update.command_id} on contact {key}: not applied \(it was applied "
            r"before\)"
        )
        system.wait_for_line(
            rf"store .*command {add.command_id} on contact {key}: not applied \(it is older than"
        )
        assert name() == "Second"
        assert (
            "exists already" not in system.output()
        )  # the add was not refused as a duplicate: it was done
    finally:
        assert system.stop() == 0
