"""Every node serves Prometheus metrics: scraped with Prometheus' own text parser, the counters
move with the traffic the test sends (mutations, queries, a command the store refuses, a
WebSocket) and with nothing else."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

import aiohttp
import pytest
from gmqtt.mqtt.constants import MQTTv311
from prometheus_client.parser import text_string_to_metric_families
from system import System, acknowledged, prepare, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> System:
    system = System(prepare("contacts_fast.yaml", tmp_path_factory.mktemp("metrics"))).start()
    yield system
    system.stop()


def scrape(system: System, node: str) -> Samples:
    """Node `node`'s /metrics, read by the Prometheus client's parser."""
    address = system.topology.metrics_of(node)
    assert address is not None
    with urllib.request.urlopen(f"http://{address.target}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_counters_move_with_the_traffic_sent(system):
    nodes = ("gateway", "writer", "store", "reader", "broker")
    before = {node: scrape(system, node) for node in nodes}

    ids = []
    for i in range(3):
        answer = system.data(
            "mutation Add($name: String!) { addContact(name: $name) { status id } }",
            {"name": f"Metric {i}"},
        )
        assert answer["addContact"]["status"] == "OK"
        ids.append(answer["addContact"]["id"])
    for contact_id in ids:  # applied after the write delay
        wait_until(
            lambda c=contact_id: system.data(f'{{ contact(id: "{c}") {{ id }} }}')["contact"]
        )
    assert system.data("query Few { listContacts(count: 2) { id } }")["listContacts"]
    # A command the store refuses (an update of a contact nobody added), put on the topic
    # directly: the gateway would have refused it itself (its `exists` check).
    refused = system.protos.message_class("contacts.UpdateContactRequest")()
    refused.contact.id = f"missing-{uuid.uuid4()}"
    refused.contact.name = "Nobody"

    async def publish() -> None:
        broker = system.topology.nodes["broker"].listen
        client = system.mqtt_client(f"test-metrics-{uuid.uuid4().hex[:6]}")
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
        client.publish("CONTACT/UPDATE", refused.SerializeToString(), qos=1)
        await acknowledged(client)
        await client.disconnect()

    asyncio.run(publish())
    system.wait_for_line(rf"set aside: update_contact {refused.contact.id}")

    after = {node: scrape(system, node) for node in nodes}
    gateway, writer, store, reader = (after[n] for n in ("gateway", "writer", "store", "reader"))
    b_gateway, b_writer, b_store, b_reader = (
        before[n] for n in ("gateway", "writer", "store", "reader")
    )

    # The gateway: 3 commands published, HTTP requests and GraphQL operations by name.
    assert delta(b_gateway, gateway, "cqrs_flow_commands_published_total", topic="CONTACT/ADD") == 3
    assert (
        delta(
            b_gateway, gateway, "cqrs_flow_graphql_operations_total", operation="Add", outcome="ok"
        )
        == 3
    )
    assert (
        delta(
            b_gateway, gateway, "cqrs_flow_graphql_operations_total", operation="Few", outcome="ok"
        )
        == 1
    )
    posts = delta(
        b_gateway,
        gateway,
        "cqrs_flow_http_requests_total",
        method="POST",
        route="/graphql",
        status="200",
    )
    assert posts >= 3 + 3 + 1  # the mutations, the lookups (until applied), the list
    assert (
        delta(
            b_gateway,
            gateway,
            "cqrs_flow_http_request_seconds_count",
            method="POST",
            route="/graphql",
        )
        == posts
    )
    assert value(gateway, "cqrs_flow_mqtt_connected") == 1
    # The writer: received, applied, refused and dead-lettered per topic; nothing held now.
    assert delta(b_writer, writer, "cqrs_flow_commands_received_total", topic="CONTACT/ADD") == 3
    assert delta(b_writer, writer, "cqrs_flow_commands_applied_total", topic="CONTACT/ADD") == 3
    assert delta(b_writer, writer, "cqrs_flow_commands_received_total", topic="CONTACT/UPDATE") == 1
    assert delta(b_writer, writer, "cqrs_flow_commands_applied_total", topic="CONTACT/UPDATE") == 0
    assert (
        delta(
            b_writer,
            writer,
            "cqrs_flow_commands_refused_total",
            topic="CONTACT/UPDATE",
            reason="refused",
        )
        == 1
    )
    assert (
        delta(b_writer, writer, "cqrs_flow_commands_dead_lettered_total", topic="CONTACT/UPDATE")
        == 1
    )
    assert value(writer, "cqrs_flow_writer_queue_depth") == 0
    # The store: operations per entity, operation and RPC, with their outcome and latency.
    insert = {"entity": "Contact", "operation": "insert", "rpc": "AddContact"}
    assert delta(b_store, store, "cqrs_flow_store_operations_total", **insert, outcome="ok") == 3
    update = {"entity": "Contact", "operation": "update", "rpc": "UpdateContact"}
    assert (
        delta(b_store, store, "cqrs_flow_store_operations_total", **update, outcome="not_found")
        == 1
    )
    assert (
        delta(
            b_store,
            store,
            "cqrs_flow_store_operation_seconds_count",
            entity="Contact",
            rpc="AddContact",
        )
        == 3
    )
    # The writer's four commands came several to a call: the calls count, not the commands.
    batches = {"service": "cqrs_flow.Commands", "method": "Apply", "code": "OK"}
    assert 1 <= delta(b_store, store, "cqrs_flow_grpc_server_requests_total", **batches) <= 4
    write = {"service": "contacts.ContactWriteService", "method": "AddContact", "code": "OK"}
    assert delta(b_store, store, "cqrs_flow_grpc_server_requests_total", **write) == 0
    lists = {"entity": "Contact", "operation": "list", "rpc": "ListContacts", "outcome": "ok"}
    assert delta(b_store, store, "cqrs_flow_store_operations_total", **lists) == 1
    # The reader: its gRPC calls by method and code.
    reader_gets = {"service": "contacts.ContactReader", "method": "GetContact"}
    found = delta(
        b_reader, reader, "cqrs_flow_grpc_server_requests_total", **reader_gets, code="OK"
    )
    missing = delta(
        b_reader, reader, "cqrs_flow_grpc_server_requests_total", **reader_gets, code="NOT_FOUND"
    )
    assert found == 3  # each contact once it was applied, and NOT_FOUND before
    assert found + missing == posts - 3 - 1
    # The broker: the nodes' connections and the test's own, gone again.
    assert value(after["broker"], "cqrs_flow_broker_connections") == 2  # gateway, writer


def test_websocket_connections_are_counted_while_open(system):
    async def scenario() -> tuple[float, float]:
        url = f"ws://{system.gateway.listen.target}/graphql"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, protocols=("graphql-transport-ws",)) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json())["type"] == "connection_ack"
                open_now = value(scrape(system, "gateway"), "cqrs_flow_websocket_connections")
        closed = wait_until(
            lambda: value(scrape(system, "gateway"), "cqrs_flow_websocket_connections") == 0
        )
        return open_now, float(closed)

    open_now, closed = asyncio.run(scenario())
    assert open_now == 1
    assert closed
    assert value(scrape(system, "gateway"), "cqrs_flow_websocket_connections_opened_total") >= 1


def test_process_and_node_facts(system):
    samples = scrape(system, "writer")
    assert value(samples, "cqrs_flow_node_info", node="writer", kind="writer", replica="") == 1
    assert value(samples, "cqrs_flow_node_ready") == 1
    assert value(samples, "cqrs_flow_node_restarts") == 0
    assert value(samples, "process_resident_memory_bytes") > 0


def test_metrics_switched_off_serve_nothing(tmp_path):
    topology = prepare("contacts_fast.yaml", tmp_path, **{"metrics": False})
    text = topology.read_text()
    # relocate gave every node a metrics address of its own: take them away again.
    topology.write_text(
        "\n".join(line for line in text.splitlines() if "metrics: 127.0.0.1" not in line)
    )
    system = System(topology).start()
    try:
        assert all(system.topology.metrics_of(name) is None for name in system.topology.nodes)
        assert "metrics on http" not in system.output()
    finally:
        system.stop()
