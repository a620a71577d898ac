"""The client matrix, Python clients against a running system: gql over HTTP with its default
schema fetch and over WebSocket, a grpcio client generated from proto/ calling the reader as
the outside client the topology declares, and a client that discovers the reader's services
through server reflection and calls one, as grpcurl and Postman do."""

from __future__ import annotations

import asyncio
import importlib
import sys

import grpc
import pytest
from client_matrix import CRM_TOKEN, start_matrix
from grpc_tools import protoc
from system import wait_until

from cqrs_flow.protobuf.compiler import DOCUMENTS_SERVICE

pytestmark = pytest.mark.clients

LIST = "query ListContacts { listContacts(count: 10) { id name } }"
BEARER = (("authorization", f"Bearer {CRM_TOKEN}"),)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    system = start_matrix(tmp_path_factory, "python-clients")
    yield system
    system.stop()


@pytest.fixture(scope="module")
def known(matrix) -> dict:
    """A contact the store holds (added through the gateway, then applied)."""
    added = matrix.data('mutation { addContact(name: "Known") { id } }')["addContact"]
    contact = {"id": added["id"], "name": "Known"}
    wait_until(lambda: contact in matrix.data(LIST)["listContacts"], timeout=15)
    return contact


# -- gql ------------------------------------------------------------------------------------


def test_gql_fetches_the_schema_and_checks_queries_against_it(matrix, known):
    import gql
    from gql.transport.aiohttp import AIOHTTPTransport
    from graphql import GraphQLError

    async def run():
        transport = AIOHTTPTransport(url=matrix.gateway.url)
        client = gql.Client(transport=transport, fetch_schema_from_transport=True)
        async with client as session:
            answer = await session.execute(gql.gql(LIST))
            with pytest.raises(GraphQLError, match="Cannot query field 'nickname'"):
                await session.execute(gql.gql("{ listContacts(count: 1) { nickname } }"))
            return answer, client.schema

    answer, schema = asyncio.run(run())
    assert known in answer["listContacts"]
    assert schema is not None and "ContactConnection" in schema.type_map
    assert not {"Date", "DateTime", "Time"} & set(schema.type_map)


def test_gql_pages_a_relay_list_checked_against_the_downloaded_schema(matrix, known):
    import gql
    from gql.transport.aiohttp import AIOHTTPTransport

    page = gql.gql(
        'query($after: String) { contacts(first: 1, after: $after, where: {name: {eq: "Known"}})'
        " { totalCount edges { cursor node { id name } } pageInfo { hasNextPage endCursor } } }"
    )

    async def run():
        client = gql.Client(
            transport=AIOHTTPTransport(url=matrix.gateway.url), fetch_schema_from_transport=True
        )
        async with client as session:
            return (await session.execute(page))["contacts"]

    contacts = asyncio.run(run())
    assert contacts["totalCount"] == 1
    assert [edge["node"] for edge in contacts["edges"]] == [known]
    assert contacts["pageInfo"]["hasNextPage"] is False and contacts["pageInfo"]["endCursor"]


def test_gql_over_websocket_is_told_when_a_command_is_applied(matrix):
    import gql
    from gql.transport.websockets import WebsocketsTransport

    added = matrix.data('mutation { addContact(name: "Over WebSocket") { command_id } }')
    command = added["addContact"]["command_id"]

    async def run():
        url = matrix.gateway.url.replace("http://", "ws://")
        async with gql.Client(transport=WebsocketsTransport(url=url)) as session:
            subscription = gql.GraphQLRequest(
                "subscription ($id: String!) { commandSettled(id: $id) { id state } }",
                variable_values={"id": command},
            )
            async for event in session.subscribe(subscription):
                return event

    assert asyncio.run(asyncio.wait_for(run(), 20)) == {
        "commandSettled": {"id": command, "state": "APPLIED"}
    }


# -- gRPC -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contacts_grpc(tmp_path_factory, matrix):
    """contacts_pb2 and contacts_pb2_grpc, generated from proto/contacts.proto with
    grpcio-tools as a client's build would."""
    out = tmp_path_factory.mktemp("generated")
    proto = matrix.topology.protos[0]
    status = protoc.main(
        [
            "protoc",
            f"-I{proto.parent}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(proto),
        ]
    )
    assert status == 0
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("contacts_pb2"), importlib.import_module("contacts_pb2_grpc")
    finally:
        sys.path.remove(str(out))


def test_a_generated_grpc_client_calls_the_reader_as_a_declared_outside_client(
    matrix, known, contacts_grpc
):
    messages, services = contacts_grpc
    reader = matrix.topology.nodes["reader"].listen.target
    with grpc.insecure_channel(reader) as channel:
        stub = services.ContactReaderStub(channel)
        found = stub.GetContact(messages.GetContactRequest(id=known["id"]), metadata=BEARER)
        assert (found.contact.id, found.contact.name) == (known["id"], "Known")
        listed = stub.ListContacts(messages.ListContactsRequest(count=10), metadata=BEARER)
        assert known["id"] in [c.id for c in listed.contacts]
        for call, metadata, says in (
            (stub.ReverseName, BEARER, "may not call contacts.ContactReader/ReverseName"),
            (stub.GetContact, (), "not a node of this system"),
            (stub.GetContact, (("authorization", "Bearer not-the-token"),), "bearer token"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(messages.ReverseNameRequest(id=known["id"]), metadata=metadata, timeout=5)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert says in refused.value.details()


def test_reflection_lets_a_client_discover_and_call_the_reader(matrix, known):
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    reader = matrix.topology.nodes["reader"].listen.target
    with grpc.insecure_channel(reader) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)  # reflection needs no token
        assert set(database.get_services()) == {
            "contacts.ContactReader",
            DOCUMENTS_SERVICE,
            "cqrs_flow.Changes",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        pool = descriptor_pool.DescriptorPool(database)
        assert "Find" in pool.FindServiceByName(DOCUMENTS_SERVICE).methods_by_name
        # What a reflection client then does: build the messages from the descriptors it got.
        get = pool.FindServiceByName("contacts.ContactReader").methods_by_name["GetContact"]
        request_class = message_factory.GetMessageClass(get.input_type)
        response_class = message_factory.GetMessageClass(get.output_type)
        call = channel.unary_unary(
            "/contacts.ContactReader/GetContact",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        found = call(request_class(id=known["id"]), metadata=BEARER, timeout=5)
        assert found.contact.name == "Known"
