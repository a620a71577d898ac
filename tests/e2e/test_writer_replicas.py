"""Writer replicas on Mosquitto: commands spread over them by MQTT shared subscriptions, and one
entity's commands, delivered in shuffled order to replicas that apply them side by side, end in
the state they give in the order they were accepted."""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections import Counter

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from system import EACH_COMMAND, EXAMPLES, System, acknowledged, prepare, wait_until

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.nodes.writer import GROUP_SESSION_EXPIRY

EXAMPLE = EXAMPLES / "contacts-mosquitto" / "topology.yaml"
ENTITIES = 60
REPLICAS = 3


def history(rng: random.Random, prefix: str) -> list[tuple[str, str, str | None, str]]:
    """(topic, key, name or None for a delete, command id) in the order they were accepted: per
    entity an add, then updates, deletes and adds again."""
    clock = CommandClock()
    steps = []
    for i in range(ENTITIES):
        key = f"{prefix}-{i:02d}"
        steps.append(("CONTACT/ADD", key, f"{key} v0"))
        for v in range(1, rng.randint(2, 6)):
            op = rng.choice(["CONTACT/UPDATE", "CONTACT/UPDATE", "CONTACT/DELETE", "CONTACT/ADD"])
            steps.append((op, key, None if op == "CONTACT/DELETE" else f"{key} v{v}"))
    rng.shuffle(steps)  # entities interleave; each entity's own steps keep their order below
    by_key: dict[str, list] = {}
    for step in steps:
        by_key.setdefault(step[1], []).append(step)
    ordered = [step for steps in by_key.values() for step in steps]
    return [(topic, key, name, clock.next_id()) for topic, key, name in ordered]


def expected(commands) -> dict[str, str]:
    """Each entity as its newest command left it."""
    final: dict[str, str] = {}
    for topic, key, name, _ in commands:
        if topic == "CONTACT/DELETE":
            final.pop(key, None)
        else:
            final[key] = name
    return final


def payload(system: System, topic: str, key: str, name: str | None, command_id: str) -> bytes:
    message = system.protos.message_class
    if topic == "CONTACT/DELETE":
        return message("contacts.DeleteContactRequest")(
            id=key, command_id=command_id
        ).SerializeToString()
    kind = (
        "contacts.AddContactRequest" if topic == "CONTACT/ADD" else "contacts.UpdateContactRequest"
    )
    request = message(kind)(command_id=command_id)
    request.contact.id, request.contact.name = key, name
    return request.SerializeToString()


def test_replicas_share_the_commands_and_converge_whatever_the_order(mosquitto, tmp_path):
    file = prepare(
        "topology.yaml",
        tmp_path,
        source=EXAMPLE,
        **{
            "nodes.broker.url": f"mqtt://{mosquitto.target}",
            "nodes.writer.replicas": REPLICAS,
            "nodes.writer.delay": "50ms",
            "nodes.store.last_writer_wins": True,
            "nodes.store.list_limit": 5000,
        },
    )
    system = System(file, env=EACH_COMMAND).start()
    prefix = f"r{uuid.uuid4().hex[:6]}"
    commands = history(random.Random(7), prefix)
    delivered = list(commands)
    random.Random(11).shuffle(delivered)  # any order: an entity's delete may come before its add

    async def publish():
        client = system.mqtt_client(f"shuffler-{prefix}", "gateway")  # may publish commands
        broker = mosquitto
        await client.connect(broker.host, broker.port, version=MQTTv311)
        for topic, key, name, command_id in delivered:
            client.publish(topic, payload(system, topic, key, name, command_id), qos=1)
        await acknowledged(client)
        await client.disconnect()

    def stored() -> dict[str, str]:
        contacts = system.data("{ listContacts(count: 5000) { id name } }")["listContacts"]
        return {c["id"]: c["name"] for c in contacts if c["id"].startswith(prefix)}

    try:
        assert [f"writer.{i}" for i in range(1, REPLICAS + 1)] == sorted(
            {
                m.group(1)
                for line in system.lines
                if (m := re.search(r"(writer\.\d) ready in", line))
            }
        )
        asyncio.run(publish())

        def settled() -> bool:
            done = sum(
                len(re.findall(rf"(?:applied|set aside).* {prefix}-", line))
                for line in list(system.lines)
            )
            return done >= len(commands)

        wait_until(settled, timeout=60, interval=0.2)
        assert stored() == expected(commands)
        by_replica = Counter(
            m.group(1)
            for line in system.lines
            if (m := re.search(rf"(writer\.\d) +\| .*applied \S+ {prefix}-", line))
        )
        assert set(by_replica) == {f"writer.{i}" for i in range(1, REPLICAS + 1)}, by_replica
        # The shuffle made older commands arrive after newer ones; the store let those pass.
        stale = sum(
            bool(re.search(rf"store .*on contact {prefix}-\d+: not applied \(it is older", line))
            for line in system.lines
        )
        assert stale > 0
        print(
            {
                "commands": len(commands),
                "entities": ENTITIES,
                "replicas": dict(by_replica),
                "older_than_what_the_store_held": stale,
                "final_state_matches": True,
            }
        )
    finally:
        assert system.stop() == 0


def test_replicas_end_the_session_their_single_writer_left_on_the_broker(mosquitto, tmp_path):
    """The writer's session from before it had replicas (its own client id, a plain subscription
    the broker keeps for ever) would have every command queued for it, to be applied again by
    whatever connected with that id next: the replicas end it when they start."""
    # The other test's replicas are members of the same share group: the broker keeps their
    # sessions GROUP_SESSION_EXPIRY seconds after they went, handing them a share meanwhile.
    time.sleep(GROUP_SESSION_EXPIRY + 1)
    overrides = {"nodes.broker.url": f"mqtt://{mosquitto.target}", "nodes.writer.delay": "50ms"}
    single = System(prepare("topology.yaml", tmp_path / "single", source=EXAMPLE, **overrides))
    single.start()
    assert single.stop() == 0  # its session stays on the broker
    system = System(
        prepare(
            "topology.yaml",
            tmp_path / "replicas",
            source=EXAMPLE,
            **overrides,
            **{"nodes.writer.replicas": 2, "nodes.store.last_writer_wins": True},
        ),
        env=EACH_COMMAND,
    ).start()
    try:
        answer = system.data('mutation { addContact(name: "While replicas ran") { status id } }')
        assert answer["addContact"]["status"] == "OK"
        key = answer["addContact"]["id"]
        assert wait_until(lambda: system.data(f'{{ contact(id: "{key}") {{ id }} }}')["contact"])
    finally:
        assert system.stop() == 0

    async def what_the_broker_kept() -> tuple[int, list[str]]:
        login = system.mqtt_login("writer")
        client = gmqtt.Client(
            f"{system.topology.name}-writer", clean_session=False, session_expiry_interval=0
        )
        client.set_auth_credentials(login.user, login.password)
        connected: list[int] = []
        topics: list[str] = []
        client.on_connect = lambda c, flags, rc, properties: connected.append(flags)
        client.on_message = lambda c, topic, payload, qos, properties: topics.append(topic) or 0
        await client.connect(mosquitto.host, mosquitto.port, version=MQTTv50)
        await asyncio.sleep(1.0)  # what a kept session holds comes at once
        await client.disconnect()
        return connected[0], topics

    session_present, delivered = asyncio.run(what_the_broker_kept())
    assert (session_present, delivered) == (0, [])
