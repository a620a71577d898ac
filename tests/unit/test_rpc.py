"""The generic gRPC server: malformed and oversized requests get the status that says so."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from cqrs_flow.rpc import MAX_MESSAGE_BYTES, service_handler, start_server
from cqrs_flow.topology.model import Address
from cqrs_flow.topology.relocate import free_ports


def call_raw(shipped_protos, payload: bytes):
    """Serve ContactReadService.GetContact and send it `payload` as the request's bytes."""
    service = shipped_protos.service("contacts.ContactReadService")
    method = service.methods_by_name["GetContact"]
    response_class = shipped_protos.class_of(method.output_type)

    async def get_contact(request, context):
        return response_class()

    async def run():
        listen = Address("127.0.0.1", free_ports(1)[0])
        server = await start_server(listen, [service_handler(shipped_protos, service, {"GetContact": get_contact})])
        try:
            async with grpc.aio.insecure_channel(listen.target, options=[
                    ("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]) as channel:
                call = channel.unary_unary("/contacts.ContactReadService/GetContact")
                return await call(payload, timeout=10)
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_a_valid_request_is_served(shipped_protos):
    request = shipped_protos.class_of(
        shipped_protos.service("contacts.ContactReadService").methods_by_name["GetContact"].input_type)(id="1")
    assert call_raw(shipped_protos, request.SerializeToString()) == b""


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"])
def test_malformed_request_is_invalid_argument_not_internal(shipped_protos, payload):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        call_raw(shipped_protos, payload)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details() == f"the request is not a valid contacts.GetContactRequest ({len(payload)} bytes)"


def test_oversized_request_is_resource_exhausted(shipped_protos):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        call_raw(shipped_protos, b"\x0a" + b"\x80" * (MAX_MESSAGE_BYTES + 10))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
