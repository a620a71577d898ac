"""rpc: a gRPC server made from descriptors, with the caller check in front of every method,
and malformed or oversized requests answered with the status that says so (a real server on
127.0.0.1, called with grpc.aio)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
from pathlib import Path

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
from cqrs_flow.topology.model import Address, SecretSource
from cqrs_flow.topology.relocate import free_ports
from cqrs_flow.transport.rpc import MAX_MESSAGE_BYTES, ServiceClient, service_handler, start_server

SECRET = "fedcba9876543210" * 4


def _certs():
    """tests/e2e/certs.py: throwaway certificates made with openssl."""
    path = Path(__file__).resolve().parents[2] / "e2e" / "certs.py"
    spec = importlib.util.spec_from_file_location("e2e_certs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CERTS = _certs()
make_ca, needs_openssl = _CERTS.make_ca, _CERTS.needs_openssl
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


# -- outside clients and server reflection ----------------------------------------------------

READER = "contacts.ContactReader"
CRM_TOKEN = "crm-token-0123456789abcdef"


def outside_reader(shipped, clients: dict) -> tuple:
    """The shipped topology whose reader declares `clients`, and the reader's CallerCheck."""
    from cqrs_flow.security.tokens import OutsideCaller, digest
    from cqrs_flow.topology.model import GrpcClient, frozen_map

    reader = shipped.nodes["reader"]
    declared = {name: GrpcClient(name, *spec) for name, spec in clients.items()}
    topology = shipped.with_node(dataclasses.replace(reader, clients=frozen_map(declared)))
    outside = {
        name: OutsideCaller(client, digest(CRM_TOKEN) if client.token else None)
        for name, client in declared.items()
    }
    credentials = credentials_from_env(topology, "reader", {ENV_SECRET: SECRET})
    return topology, CallerCheck(topology.callers_of("reader"), credentials, outside)


async def serve_reader(protos, check, reflection=True, credentials=None):
    """The reader's service and the document service, answering every RPC with an empty
    response (the check decides who gets there), with or without reflection."""
    handlers = []
    for name in (READER, "cqrs_flow.Documents"):
        service = protos.service(name)

        def answer(response_class):
            async def handler(request, context):
                return response_class()

            return handler

        handlers.append(
            service_handler(
                protos,
                service,
                {m.name: answer(protos.class_of(m.output_type)) for m in service.methods},
                check,
            )
        )
    listen = Address("127.0.0.1", free_ports(1)[0])
    served = (protos, (READER, "cqrs_flow.Documents")) if reflection else None
    return listen, await start_server(listen, handlers, check, credentials, served)


async def outcome(channel, method: str, metadata=()) -> grpc.StatusCode:
    try:
        await channel.unary_unary(method)(b"", metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_an_outside_client_with_a_bearer_token_calls_what_it_may(shipped, shipped_protos):
    _, check = outside_reader(
        shipped, {"crm": ((f"{READER}/GetContact", "cqrs_flow.Documents"), SecretSource(env="T"))}
    )
    bearer = (("authorization", f"Bearer {CRM_TOKEN}"),)

    async def main():
        listen, server = await serve_reader(shipped_protos, check)
        try:
            async with grpc.aio.insecure_channel(listen.target) as channel:
                return [
                    await outcome(channel, f"/{READER}/GetContact", bearer),
                    await outcome(channel, "/cqrs_flow.Documents/Find", bearer),
                    await outcome(channel, f"/{READER}/ListContacts", bearer),
                    await outcome(channel, f"/{READER}/GetContact"),
                    await outcome(
                        channel, f"/{READER}/GetContact", (("authorization", "Bearer x"),)
                    ),
                    await outcome(channel, f"/{READER}/NoSuchRpc", bearer),
                ]
        finally:
            await server.stop(None)

    assert asyncio.run(main()) == [
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.PERMISSION_DENIED,  # not in its `call`
        grpc.StatusCode.PERMISSION_DENIED,  # anonymous
        grpc.StatusCode.PERMISSION_DENIED,  # a token of nobody's
        grpc.StatusCode.PERMISSION_DENIED,  # nor is an RPC the server does not have
    ]


async def reflected(target: str, request) -> object:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        await stream.write(reflection_pb2.ServerReflectionRequest(**request))
        await stream.done_writing()
        return await stream.read()


def test_reflection_lists_and_describes_the_services_to_anyone(shipped, shipped_protos):
    from google.protobuf import descriptor_pb2

    _, check = outside_reader(shipped, {})

    async def main():
        listen, server = await serve_reader(shipped_protos, check)
        try:
            listed = await reflected(listen.target, {"list_services": ""})
            files = {}
            for symbol in (READER, "cqrs_flow.Documents", "grpc.health.v1.Health"):
                found = await reflected(listen.target, {"file_containing_symbol": symbol})
                files[symbol] = found
            return listed, files
        finally:
            await server.stop(None)

    listed, files = asyncio.run(main())
    assert {s.name for s in listed.list_services_response.service} == {
        READER,
        "cqrs_flow.Documents",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    for symbol, answer in files.items():
        assert answer.WhichOneof("message_response") == "file_descriptor_response", symbol
        described = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        services = {f"{f.package}.{s.name}" for f in described for s in f.service}
        assert symbol in services


def test_without_reflection_it_is_refused_like_any_other_unknown_service(shipped, shipped_protos):
    _, check = outside_reader(shipped, {})

    async def main():
        listen, server = await serve_reader(shipped_protos, check, reflection=False)
        try:
            return await reflected(listen.target, {"list_services": ""})
        finally:
            await server.stop(None)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(main())
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


@needs_openssl
def test_an_outside_client_with_a_certificate_is_known_by_its_name(
    shipped, shipped_protos, tmp_path
):
    make_ca(tmp_path, "ca")
    # make_ca signs a client certificate named "node"
    _, check = outside_reader(shipped, {"tool": ((f"{READER}/ListContacts",), None, "node")})
    read = lambda name: (tmp_path / name).read_bytes()  # noqa: E731
    server_credentials = grpc.ssl_server_credentials(
        [(read("server.key"), read("server.pem"))],
        root_certificates=read("ca.pem"),
        require_client_auth=True,
    )
    channel_credentials = grpc.ssl_channel_credentials(
        read("ca.pem"), read("node.key"), read("node.pem")
    )

    async def main():
        listen, server = await serve_reader(shipped_protos, check, credentials=server_credentials)
        try:
            async with grpc.aio.secure_channel(listen.target, channel_credentials) as channel:
                return [
                    await outcome(channel, f"/{READER}/ListContacts"),
                    await outcome(channel, f"/{READER}/GetContact"),
                ]
        finally:
            await server.stop(None)

    assert asyncio.run(main()) == [grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED]
