"""rpc: a gRPC server made from descriptors, with the caller check in front of every method,
and malformed or oversized requests answered with the status that says so (a real server on
127.0.0.1, called with grpc.aio)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cqrs_flow.security.tokens import (
    ENV_SECRET,
    CallerCheck,
    Credentials,
    credentials_from_env,
    derive_token,
)
from cqrs_flow.topology.model import Address
from cqrs_flow.topology.relocate import free_ports
from cqrs_flow.transport.rpc import MAX_MESSAGE_BYTES, ServiceClient, service_handler, start_server

SECRET = "fedcba9876543210" * 4
READ = "contacts.ContactReadService"


def serve_and_call(shipped, protos, calls):
    """Serve the store's read service (GetContact answered by a handler that sees a message,
    ListContacts by one that sees the request's bytes) and run `calls(target, seen)`."""
    seen: list = []
    get_response = protos.message_class("contacts.GetContactResponse")
    list_response = protos.message_class("contacts.ListContactsResponse")

    async def get(request, context):
        seen.append(request)
        return get_response(contact={"id": request.id, "name": "Ada"})

    async def list_raw(request: bytes, context) -> bytes:
        seen.append(request)
        return list_response(contacts=[{"id": "1", "name": "Grace"}]).SerializeToString()

    async def main():
        check = CallerCheck(
            shipped.callers_of("store"),
            credentials_from_env(shipped, "store", {ENV_SECRET: SECRET}),
        )
        handlers = service_handler(
            protos,
            protos.service(READ),
            {"GetContact": get, "ListContacts": list_raw},
            check,
            forward={"ListContacts"},
        )
        listen = Address("127.0.0.1", free_ports(1)[0])
        server = await start_server(listen, [handlers], check)
        try:
            return await calls(listen.target, seen)
        finally:
            await server.stop(None)

    return asyncio.run(main())


async def status_of(
    target: str, method: str, body: bytes, caller: str | None, token: str | None = None
):
    metadata = Credentials(caller, token or derive_token(SECRET, caller)).metadata if caller else ()
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            await channel.unary_unary(method)(body, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, None


def test_a_wired_caller_gets_messages_and_forwarded_bytes_through(shipped, shipped_protos):
    reader = Credentials("reader", derive_token(SECRET, "reader"))

    async def calls(target, seen):
        client = ServiceClient(shipped_protos, shipped_protos.service(READ), target, reader)
        try:
            one = await client.call("GetContact", client.request_class("GetContact")(id="42"))
            raw = client.request_class("ListContacts")(count=3).SerializeToString()
            many = await client.forward("ListContacts", raw)
        finally:
            await client.close()
        return one, raw, many, seen

    one, raw, many, seen = serve_and_call(shipped, shipped_protos, calls)
    assert one.contact.id == "42" and one.contact.name == "Ada"
    assert seen[0].id == "42"  # the handler got a message
    assert seen[1] == raw  # the forwarding handler got the bytes as sent, and answered bytes
    assert (
        shipped_protos.message_class("contacts.ListContactsResponse")
        .FromString(many)
        .contacts[0]
        .name
        == "Grace"
    )


NOT_KNOWN = "caller {!r} is not a node of this system or its credentials are wrong"


@pytest.mark.parametrize(
    "method, body, caller, token, status",
    [
        # refused before the request is decoded: a stranger learns nothing from a bad body
        (
            f"/{READ}/GetContact",
            b"\xff\xff",
            None,
            None,
            (grpc.StatusCode.PERMISSION_DENIED, NOT_KNOWN.format("(anonymous)")),
        ),
        (
            f"/{READ}/ListContacts",
            b"",
            "reader",
            "forged",
            (grpc.StatusCode.PERMISSION_DENIED, NOT_KNOWN.format("reader")),
        ),
        (
            f"/{READ}/GetContact",
            b"",
            "writer",
            None,
            (
                grpc.StatusCode.PERMISSION_DENIED,
                f"node 'writer' may not call {READ}: the topology does not wire it there",
            ),
        ),
        # a wired caller with a body that is not the request message
        (
            f"/{READ}/GetContact",
            b"\xff\xff",
            "reader",
            None,
            (
                grpc.StatusCode.INVALID_ARGUMENT,
                "the request is not a valid contacts.GetContactRequest (2 bytes)",
            ),
        ),
        # methods the server does not serve: refused like served ones, UNIMPLEMENTED to a wired
        # caller
        (
            f"/{READ}/Nope",
            b"",
            None,
            None,
            (grpc.StatusCode.PERMISSION_DENIED, NOT_KNOWN.format("(anonymous)")),
        ),
        (
            "/contacts.ContactWriteService/AddContact",
            b"",
            "reader",
            None,
            (
                grpc.StatusCode.PERMISSION_DENIED,
                "node 'reader' may not call contacts.ContactWriteService: the topology does not "
                "wire it there",
            ),
        ),
        (
            "/contacts.ContactWriteService/AddContact",
            b"",
            "writer",
            None,
            (grpc.StatusCode.UNIMPLEMENTED, "Method not found!"),
        ),
        (
            f"/{READ}/Nope",
            b"",
            "reader",
            None,
            (grpc.StatusCode.UNIMPLEMENTED, "Method not found!"),
        ),
        (
            "/grpc.health.v1.Health/Nope",
            b"",
            None,
            None,
            (grpc.StatusCode.UNIMPLEMENTED, "Method not found!"),
        ),
    ],
)
def test_calls_the_check_refuses_or_the_server_cannot_serve(
    shipped, shipped_protos, method, body, caller, token, status
):
    async def calls(target, seen):
        return await status_of(target, method, body, caller, token), seen

    answer, seen = serve_and_call(shipped, shipped_protos, calls)
    assert answer == status
    assert seen == []  # no handler ran


def test_the_health_service_needs_no_credentials(shipped, shipped_protos):
    async def calls(target, seen):
        async with grpc.aio.insecure_channel(target) as channel:
            return await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )

    assert (
        serve_and_call(shipped, shipped_protos, calls).status
        == health_pb2.HealthCheckResponse.SERVING
    )


# -- malformed and oversized requests --------------------------------------------------------


def call_raw(shipped_protos, payload: bytes):
    """Serve ContactReadService.GetContact and send it `payload` as the request's bytes."""
    service = shipped_protos.service("contacts.ContactReadService")
    method = service.methods_by_name["GetContact"]
    response_class = shipped_protos.class_of(method.output_type)

    async def get_contact(request, context):
        return response_class()

    async def run():
        listen = Address("127.0.0.1", free_ports(1)[0])
        server = await start_server(
            listen, [service_handler(shipped_protos, service, {"GetContact": get_contact})]
        )
        try:
            async with grpc.aio.insecure_channel(
                listen.target, options=[("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]
            ) as channel:
                call = channel.unary_unary("/contacts.ContactReadService/GetContact")
                return await call(payload, timeout=10)
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_a_valid_request_is_served(shipped_protos):
    request = shipped_protos.class_of(
        shipped_protos.service("contacts.ContactReadService")
        .methods_by_name["GetContact"]
        .input_type
    )(id="1")
    assert call_raw(shipped_protos, request.SerializeToString()) == b""


@pytest.mark.parametrize(
    "payload", [b"\xff\xff\xff", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"]
)
def test_malformed_request_is_invalid_argument_not_internal(shipped_protos, payload):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        call_raw(shipped_protos, payload)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        exc.value.details()
        == f"the request is not a valid contacts.GetContactRequest ({len(payload)} bytes)"
    )


def test_oversized_request_is_resource_exhausted(shipped_protos):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        call_raw(shipped_protos, b"\x0a" + b"\x80" * (MAX_MESSAGE_BYTES + 10))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
