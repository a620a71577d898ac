"""Helpers of the change log's end-to-end tests: reading a running store's log and documents as
its reader does (the reader's credentials), and publishing commands straight onto the broker."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from dataclasses import dataclass, field

import grpc
from gmqtt.mqtt.constants import MQTTv311
from system import System, acknowledged
from test_up_lifecycle import node_pid

from cqrs_flow.protobuf.compiler import CHANGES_SERVICE, DOCUMENTS_SERVICE
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.security.tokens import Credentials
from cqrs_flow.topology.model import StoreNode
from cqrs_flow.transport.rpc import ServiceClient


@dataclass
class Logged:
    """The whole log of a store, decoded: Change messages, documents as data."""

    changes: list = field(default_factory=list)
    documents: dict = field(default_factory=dict)  # position -> document after (None: delete)


def _clients(system: System, store: str, as_node: str) -> tuple[ServiceClient, ServiceClient]:
    node = system.topology.nodes[store]
    assert isinstance(node, StoreNode)
    credentials = Credentials(as_node, system.token(as_node))
    changes = ServiceClient(
        system.protos, system.protos.service(CHANGES_SERVICE), node.read.listen.target, credentials
    )
    return changes, changes.sibling(system.protos.service(DOCUMENTS_SERVICE))


async def read_log(system: System, store: str = "store", as_node: str = "reader") -> Logged:
    """Every change the store's log holds, in order (Follow without waiting)."""
    changes, _ = _clients(system, store, as_node)
    found = Logged()
    try:
        request = changes.request_class("Follow")(after=0, wait=False)
        async for change in changes.stream("Follow", request, timeout=60):
            entity = system.topology.entities[change.entity]
            cls = system.protos.message_class(entity.document)
            found.changes.append(change)
            found.documents[change.position] = (
                None
                if change.op == "delete"
                else data_converter(cls.DESCRIPTOR)(cls.FromString(change.document))
            )
    finally:
        await changes.close()
    return found


async def stored(system: System, entity: str, store: str = "store", as_node: str = "reader"):
    """key -> document, every document of `entity` the store holds (Find, paged)."""
    _, documents = _clients(system, store, as_node)
    cls = system.protos.message_class(system.topology.entities[entity].document)
    key = system.topology.entities[entity].key
    found, after = {}, None
    try:
        while True:
            query = {"entity": entity, "first": 500}
            if after is not None:
                query["after"] = after
            request = documents.request_class("Find")(queries=[query])
            page = (await documents.call("Find", request, timeout=30)).pages[0]
            for data in page.documents:
                document = data_converter(cls.DESCRIPTOR)(cls.FromString(data))
                found[document[key]] = document
            if not page.has_next:
                return found
            after = page.positions[-1]
    finally:
        await documents.close()


def last_changes(logged: Logged, entity: str) -> dict:
    """key -> (op, document after) of the last change of each key of `entity`."""
    last = {}
    for change in logged.changes:
        if change.entity == entity:
            last[change.key] = (change.op, logged.documents[change.position])
    return last


def check_log_matches_store(logged: Logged, documents: dict, entity: str) -> None:
    """Positions strictly increase; each stored document is its key's last change's document,
    and a key whose last change is a delete is not stored: nothing in the log the store lacks,
    nothing stored the log lacks."""
    positions = [c.position for c in logged.changes]
    assert positions == sorted(set(positions)), "positions must strictly increase"
    last = last_changes(logged, entity)
    for key, document in documents.items():
        assert key in last, f"{key} is stored but has no change in the log"
        op, logged_document = last[key]
        assert op != "delete", f"{key} is stored but its last change is a delete"
        assert logged_document == document, (key, logged_document, document)
    for key, (op, _) in last.items():
        if key not in documents:
            assert op == "delete", f"{key} is not stored but its last change is {op}"


@dataclass
class Load:
    """Commands on contacts published straight onto the broker: per key an insert, updates and
    maybe a delete, each with a command id of its own, the keys interleaved."""

    system: System
    keys: int
    seed: int = 1
    published: dict = field(default_factory=dict)  # command id -> key

    def commands(self) -> list[tuple[str, bytes]]:
        from cqrs_flow.contracts.ordering import CommandClock

        rng, clock = random.Random(self.seed), CommandClock()
        message = self.system.protos.message_class
        lanes = []
        for k in range(self.keys):
            key = f"log-{k:04d}-{uuid.uuid4().hex[:6]}"
            lane = [("add", key)] + [("update", key)] * rng.randint(0, 3)
            if rng.random() < 0.3:
                lane.append(("delete", key))
            lanes.append(lane)
        out = []
        while any(lanes):
            lane = rng.choice([lane for lane in lanes if lane])
            op, key = lane.pop(0)
            command_id = clock.next_id()
            self.published[command_id] = key
            if op == "delete":
                request = message("contacts.DeleteContactRequest")(id=key, command_id=command_id)
                out.append(("CONTACT/DELETE", request.SerializeToString()))
                continue
            name = "AddContactRequest" if op == "add" else "UpdateContactRequest"
            request = message(f"contacts.{name}")(command_id=command_id)
            request.contact.id = key
            request.contact.name = f"{op} {command_id[-6:]}"
            topic = "CONTACT/ADD" if op == "add" else "CONTACT/UPDATE"
            out.append((topic, request.SerializeToString()))
        return out

    async def publish(self, kills: dict[int, str], pause: float = 0.005) -> list[int]:
        """Publish every command; before the i-th, kill -9 node kills[i]. The pids killed."""
        broker = self.system.topology.nodes["broker"].listen
        client = self.system.mqtt_client(f"test-log-{uuid.uuid4().hex[:6]}")
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
        killed = []
        for i, (topic, payload) in enumerate(self.commands()):
            if i in kills:  # once the node runs again after the kill before, if any
                ready = f"cqrs-flow | {kills[i]} ready in"
                before = sum(kills[j] == kills[i] for j in kills if j < i)
                while sum(ready in line for line in self.system.lines) <= before:
                    await asyncio.sleep(0.05)
                pid = node_pid(self.system, kills[i])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            client.publish(topic, payload, qos=1)
            await asyncio.sleep(pause)
        await acknowledged(client, timeout=60)
        await client.disconnect()
        return killed


def grpc_code(error: BaseException) -> grpc.StatusCode | None:
    return error.code() if isinstance(error, grpc.aio.AioRpcError) else None
