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
