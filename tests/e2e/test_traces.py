"""Traces: one mutation is one trace from the gateway's HTTP request through its GraphQL
operation and the MQTT command (its traceparent in the payload's envelope on MQTT 3.1.1) to the
writer and the store's write call; one query is one trace through the reader's gRPC calls to the
store. The nodes run in this process, over their real MQTT and gRPC links, so that the SDK's
in-memory exporter sees every span."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from system import SECRET

from cqrs_flow.nodes import NodeService, build_service
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.security.tokens import ENV_SECRET
from cqrs_flow.telemetry import tracing
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import Topology
from cqrs_flow.topology.relocate import relocate

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.install(None)


@asynccontextmanager
async def running(topology: Topology) -> AsyncIterator[dict[str, NodeService]]:
    """Every node of `topology` started here, in dependency order; stopped in reverse."""
    protos = compile_protos(list(topology.protos), topology.root)
    services: dict[str, NodeService] = {}
    try:
        for name in ("broker", "store", "reader", "writer", "gateway"):
            if topology.nodes[name].processes == 0:
                continue  # an external broker
            services[name] = build_service(topology, name, protos, {ENV_SECRET: SECRET})
            await services[name].start()
        yield services
    finally:
        for service in reversed(services.values()):
            await service.stop()


async def graphql(topology: Topology, query: str) -> dict:
    url = f"http://{topology.nodes['gateway'].listen.target}/graphql"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"query": query}) as response:
            return json.loads(await response.text())


def parent_of(span: ReadableSpan, trace: list[ReadableSpan]) -> ReadableSpan:
    (parent,) = [s for s in trace if span.parent and s.context.span_id == span.parent.span_id]
    return parent


def test_one_mutation_is_one_trace_from_gateway_through_writer_to_store(
    spans, tmp_path, monkeypatch
):
    monkeypatch.setenv(ENV_SECRET, SECRET)
    topology = load_topology(
        relocate(REPOSITORY / "topology.yaml", tmp_path / "t.yaml", {"nodes.writer.delay": "50ms"})
    )

    async def scenario() -> str:
        async with running(topology):
            answer = await graphql(topology, 'mutation { addContact(name: "Traced") { id } }')
            contact = answer["data"]["addContact"]["id"]
            query = f'{{ contact(id: "{contact}") {{ name }} }}'
            for _ in range(100):  # until the writer has applied it
                if (await graphql(topology, query))["data"]["contact"]:
                    break
                await asyncio.sleep(0.05)
            return contact

    asyncio.run(scenario())
    finished = spans.get_finished_spans()
    (apply,) = [s for s in finished if s.name == "apply add_contact"]
    mutation = [s for s in finished if s.context.trace_id == apply.context.trace_id]
    names = {s.name for s in mutation}
    assert {
        "POST /graphql",  # the gateway's HTTP request
        "graphql (anonymous)",  # its GraphQL operation
        "publish CONTACT/ADD",  # the command on MQTT
        "apply add_contact",  # the writer, after its delay
        "contacts.ContactWriteService/AddContact",  # the store's write call
    } <= names, names
    by_name = {s.name: s for s in mutation}
    store_call = by_name["contacts.ContactWriteService/AddContact"]
    assert store_call.kind == SpanKind.SERVER
    assert parent_of(store_call, mutation) is by_name["apply add_contact"]
    assert by_name["apply add_contact"].kind == SpanKind.CONSUMER
    assert parent_of(by_name["apply add_contact"], mutation) is by_name["publish CONTACT/ADD"]
    assert by_name["apply add_contact"].attributes["cqrs_flow.node"] == "writer"
    assert parent_of(by_name["publish CONTACT/ADD"], mutation).name == "graphql (anonymous)"
    root = by_name["POST /graphql"]
    assert root.parent is None and root.kind == SpanKind.SERVER

    # A query: the gateway's request, the reader's gRPC call, the store's read call.
    reads = [s for s in finished if s.name == "contacts.ContactReadService/GetContact"]
    assert reads
    query = [s for s in finished if s.context.trace_id == reads[-1].context.trace_id]
    assert {"POST /graphql", "contacts.ContactReader/GetContact"} <= {s.name for s in query}


def test_on_mqtt_5_the_trace_travels_in_user_properties(spans, mosquitto, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_SECRET, SECRET)
    example = REPOSITORY / "examples" / "contacts-mosquitto" / "topology.yaml"
    overrides = {"nodes.broker.url": f"mqtt://{mosquitto.target}", "nodes.writer.delay": "50ms"}
    topology = load_topology(relocate(example, tmp_path / "t.yaml", overrides))
    assert topology.nodes["broker"].protocol == "5"
    published: list[tuple[bytes, object]] = []

    async def scenario() -> None:
        async with running(topology) as services:
            writer = services["writer"]
            received = writer._on_message

            async def watch(client, topic, payload, qos, properties):
                published.append((payload, properties))
                return await received(client, topic, payload, qos, properties)

            writer.mqtt.on_message = watch
            await graphql(topology, 'mutation { addContact(name: "Five") { id } }')
            for _ in range(100):
                if any(s.name == "apply add_contact" for s in spans.get_finished_spans()):
                    return
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    finished = spans.get_finished_spans()
    (apply,) = [s for s in finished if s.name == "apply add_contact"]
    (publish,) = [s for s in finished if s.name == "publish CONTACT/ADD"]
    assert apply.parent is not None and apply.parent.span_id == publish.context.span_id
    ((payload, properties),) = published
    assert tracing.unwrap(payload)[1] is None  # nothing in front of the command
    assert any(name == "traceparent" for name, _ in properties["user_property"])


def test_a_traceparent_travels_in_front_of_the_command_and_comes_off_again():
    payload = b"\x0a\x05hello"
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    wrapped = tracing.wrap(payload, traceparent)
    assert tracing.unwrap(wrapped) == (payload, traceparent)
    assert tracing.unwrap(payload) == (payload, None)
    assert tracing.wrap(payload, None) == payload
