"""The store node in-process: a real StoreService on free ports, called by a real gRPC client."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import cqrs_flow.nodes.store as store_node
from cqrs_flow.contracts.store import store_plan
from cqrs_flow.errors import TopologyError
from cqrs_flow.nodes.store import StoreService
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.security.tokens import ENV_SECRET, Credentials, credentials_from_env, derive_token
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.problems import Problems
from cqrs_flow.topology.relocate import relocate

SECRET = "0123456789abcdef" * 4
DELETE = "/contacts.ContactWriteService/DeleteContact"
REPEATED_ID = [
    (
        "message DeleteContactRequest { string id = 1; string command_id = 15; }",
        "message DeleteContactRequest { string id = 1; repeated string command_id = 15; }",
    )
]


@pytest.fixture
def project(make_project, proto_cache):
    """topology file on free ports -> (the store service, the compiled protos)."""

    def make(proto=()):
        path = make_project(proto=proto)
        topology = load_topology(relocate(path, path.parent / "relocated.yaml"))
        protos = compile_protos(list(topology.protos), topology.root)
        credentials = credentials_from_env(topology, "store", {ENV_SECRET: SECRET})
        return StoreService(topology, topology.nodes["store"], protos, credentials), protos

    return make


async def call(service: StoreService, method: str, request) -> tuple[grpc.StatusCode, str]:
    metadata = Credentials("writer", derive_token(SECRET, "writer")).metadata
    async with grpc.aio.insecure_channel(service.node.write.listen.target) as channel:
        rpc = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString())
        try:
            await rpc(request, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def test_a_store_whose_request_repeats_the_command_id_does_not_start(project):
    service, _ = project(REPEATED_ID)

    async def main():
        try:
            await service.start()
        finally:
            await service.stop()

    with pytest.raises(TopologyError) as refused:
        asyncio.run(main())
    assert [p.path for p in refused.value.problems] == ["nodes.store.write.rpcs.DeleteContact"]
    assert "DeleteContactRequest.command_id is repeated" in str(refused.value)


def test_a_repeated_command_id_is_an_invalid_argument(project, monkeypatch):
    # Were the plan's problems ignored, the store must still answer, not fail on the request.
    monkeypatch.setattr(
        store_node,
        "store_plan",
        lambda topology, node, protos, report: store_plan(
            topology, node, protos, Problems(topology.located)
        ),
    )
    service, protos = project(REPEATED_ID)
    request = protos.message_class("contacts.DeleteContactRequest")

    async def main():
        await service.start()
        try:
            repeated = await call(service, DELETE, request(id="c1", command_id=["a", "b"]))
            without = await call(service, DELETE, request(id="c1"))
            return repeated, without
        finally:
            await service.stop()

    repeated, without = asyncio.run(main())
    assert repeated == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "'command_id' must hold one string, the command id",
    )
    assert without[0] == grpc.StatusCode.NOT_FOUND  # no id: served as before


APPLY = "/cqrs_flow.Commands/Apply"


async def apply_batch(service: StoreService, protos, calls, node: str = "writer"):
    """cqrs_flow.Commands/Apply with `calls` ((rpc, request message or bytes), ...) as `node`:
    ((code, details) of each call, ...), or the whole call's (code, details) if it failed."""
    batch = protos.message_class("cqrs_flow.CommandBatch")()
    for rpc, request in calls:
        encoded = request if isinstance(request, bytes) else request.SerializeToString()
        batch.calls.add(rpc=rpc, request=encoded)
    results = protos.message_class("cqrs_flow.CommandResults")
    metadata = Credentials(node, derive_token(SECRET, node)).metadata
    async with grpc.aio.insecure_channel(service.node.write.listen.target) as channel:
        rpc = channel.unary_unary(
            APPLY,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=results.FromString,
        )
        try:
            answer = await rpc(batch, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
    return [(grpc.StatusCode(_code(r.code)), r.details) for r in answer.results]


def _code(value: int) -> tuple[int, str]:
    return next(code.value for code in grpc.StatusCode if code.value[0] == value)


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
def test_a_batch_applies_each_command_as_its_own_call_would(make_project, proto_cache, durable):
    edits = [("    timestamp: last_updated\n", "    timestamp: last_updated\n    data: data\n")]
    path = make_project(yaml=edits if durable else ())
    topology = load_topology(relocate(path, path.parent / "relocated.yaml"))
    protos = compile_protos(list(topology.protos), topology.root)
    credentials = credentials_from_env(topology, "store", {ENV_SECRET: SECRET})
    service = StoreService(topology, topology.nodes["store"], protos, credentials)
    assert (service.node.data is not None) == durable
    add, delete = (
        protos.message_class(f"contacts.{name}Request") for name in ("AddContact", "DeleteContact")
    )

    def adding(key: str, command_id: str):
        request = add(command_id=command_id)
        request.contact.id, request.contact.name = key, f"Name of {key}"
        return request

    async def main():
        await service.start()
        try:
            first = await apply_batch(
                service,
                protos,
                [
                    ("AddContact", adding("a", "0000000000001-aa")),
                    ("AddContact", adding("a", "0000000000001-aa")),  # delivered again: once
                    ("DeleteContact", delete(id="nobody", command_id="0000000000002-aa")),
                    ("AddContact", adding("a", "0000000000003-aa")),  # the key exists
                    ("Nothing", b""),
                    ("AddContact", b"\xff\xff"),
                    ("AddContact", adding("b", "0000000000004-aa")),
                ],
            )
            refused = await apply_batch(
                service, protos, [("AddContact", adding("c", "0000000000005-aa"))], node="reader"
            )
            stored = service.backends["Contact"]
            return first, refused, sorted(d["id"] for d in await stored.list(10))
        finally:
            await service.stop()

    first, refused, keys = asyncio.run(main())
    assert [code for code, _ in first] == [
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OK,
    ]
    assert first[2][1] == "no contact with id 'nobody'"
    assert refused[0] == grpc.StatusCode.PERMISSION_DENIED  # the write side's callers only
    assert keys == ["a", "b"]
