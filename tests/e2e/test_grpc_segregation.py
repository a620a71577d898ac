"""Read/write segregation is enforced by the services, not just by the wiring."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cqrs_flow.security.tokens import Credentials


def call(system, node: str | None, service: str, rpc: str, request, token: str | None = None):
    store = system.topology.nodes["store"]
    side = store.write if service == store.write.name else store.read
    method = system.protos.method(service, rpc)
    response_class = system.protos.class_of(method.output_type)
    metadata = ()
    if node:
        metadata = Credentials(node, token or system.token(node)).metadata
    with grpc.insecure_channel(side.listen.target) as channel:
        stub = channel.unary_unary(
            f"/{service}/{rpc}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return stub(request, metadata=metadata, timeout=5)


def get_request(system, contact_id="x"):
    return system.protos.message_class("contacts.GetContactRequest")(id=contact_id)


def add_many_request(system, *names):
    request = system.protos.message_class("contacts.AddContactsRequest")()
    for name in names:
        request.contacts.add(name=name)
    return request


def test_writer_credentials_are_refused_by_the_read_service(contacts):
    with pytest.raises(grpc.RpcError) as refused:
        call(contacts, "writer", "contacts.ContactReadService", "GetContact", get_request(contacts))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not call contacts.ContactReadService" in refused.value.details()


def test_reader_credentials_are_refused_by_the_write_service(contacts):
    with pytest.raises(grpc.RpcError) as refused:
        call(
            contacts,
            "reader",
            "contacts.ContactWriteService",
            "AddContacts",
            add_many_request(contacts, "x"),
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "node, token", [(None, None), ("writer", "forged-token"), ("intruder", "x" * 64)]
)
def test_calls_without_valid_credentials_are_refused(contacts, node, token):
    with pytest.raises(grpc.RpcError) as refused:
        call(
            contacts,
            node,
            "contacts.ContactWriteService",
            "AddContacts",
            add_many_request(contacts, "x"),
            token=token,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_each_side_serves_the_node_wired_to_it(contacts):
    written = call(
        contacts,
        "writer",
        "contacts.ContactWriteService",
        "AddContacts",
        add_many_request(contacts, "Grace", "Linus"),
    )
    assert written.count == 2
    listed = call(
        contacts,
        "reader",
        "contacts.ContactReadService",
        "ListContacts",
        contacts.protos.message_class("contacts.ListContactsRequest")(count=1000),
    )
    assert {"Grace", "Linus"} <= {c.name for c in listed.contacts}
    with pytest.raises(grpc.RpcError) as missing:
        call(
            contacts,
            "reader",
            "contacts.ContactReadService",
            "GetContact",
            get_request(contacts, "nope"),
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_service_answers_without_credentials(contacts):
    for address in (
        contacts.topology.nodes["store"].write.listen,
        contacts.topology.nodes["reader"].listen,
    ):
        with grpc.insecure_channel(address.target) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_command_id_is_applied_once(contacts):
    request = contacts.protos.message_class("contacts.UpdateContactRequest")()
    added = call(
        contacts,
        "writer",
        "contacts.ContactWriteService",
        "AddContacts",
        add_many_request(contacts, "Once"),
    )
    listed = call(
        contacts,
        "reader",
        "contacts.ContactReadService",
        "ListContacts",
        contacts.protos.message_class("contacts.ListContactsRequest")(count=1000),
    )
    contact = next(c for c in listed.contacts if c.name == "Once")
    assert added.count == 1
    request.contact.id, request.contact.name, request.command_id = contact.id, "Twice?", "cmd-once"
    first = call(contacts, "writer", "contacts.ContactWriteService", "UpdateContact", request)
    stamp = call(
        contacts,
        "reader",
        "contacts.ContactReadService",
        "GetContact",
        get_request(contacts, contact.id),
    ).contact.last_updated
    request.contact.name = (
        "Changed on the way"  # a redelivery carries the same id: not applied again
    )
    again = call(contacts, "writer", "contacts.ContactWriteService", "UpdateContact", request)
    assert again == first
    now = call(
        contacts,
        "reader",
        "contacts.ContactReadService",
        "GetContact",
        get_request(contacts, contact.id),
    )
    assert now.contact.name == "Twice?" and now.contact.last_updated == stamp


def test_health_watches_without_credentials_are_capped_and_list_answers(contacts):
    """Watch streams need no token: beyond 100 open at once (HealthService's MAX_WATCHES) on a
    server, more are refused at once instead of each holding memory until the caller leaves."""
    target = contacts.topology.nodes["store"].read.listen.target
    cap = 100

    async def scenario():
        channels = [grpc.aio.insecure_channel(target) for _ in range(4)]
        stubs = [health_pb2_grpc.HealthStub(channel) for channel in channels]
        watches = []
        try:
            for i in range(cap):
                watches.append(stubs[i % 4].Watch(health_pb2.HealthCheckRequest(), timeout=60))
            first = await asyncio.gather(*(watch.read() for watch in watches))
            assert {answer.status for answer in first} == {health_pb2.HealthCheckResponse.SERVING}
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stubs[0].Watch(health_pb2.HealthCheckRequest(), timeout=10).read()
            check = await stubs[1].Check(health_pb2.HealthCheckRequest(), timeout=10)
            listed = await stubs[2].List(health_pb2.HealthListRequest(), timeout=10)
            return refused.value.code(), check.status, dict(listed.statuses)
        finally:
            for watch in watches:
                watch.cancel()
            for channel in channels:
                await channel.close()

    code, checked, listed = asyncio.run(scenario())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert checked == health_pb2.HealthCheckResponse.SERVING  # Check is never capped
    serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    assert listed == {  # the server, the services it serves by name, and liveness
        name: serving
        for name in (
            "",
            "contacts.ContactReadService",
            "cqrs_flow.Documents",
            "cqrs_flow.Changes",
            "liveness",
        )
    }
