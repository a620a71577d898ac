"""gRPC over TLS from the topology: the system runs through it, and callers without it are refused.

The store's write service and the reader want client certificates (mutual TLS), the store's read
service only serves TLS. A throwaway CA and certificates are made with openssl for the test.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from certs import make_ca, needs_openssl
from system import System, prepare, wait_until

from cqrs_flow.security.tokens import Credentials

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> System:
    directory = tmp_path_factory.mktemp("tls")
    make_ca(directory / "tls", "ca")
    make_ca(directory / "other", "other")  # a CA the system does not trust
    server = {"cert": "tls/server.pem", "key": "tls/server.key", "ca": "tls/ca.pem"}
    node = {"cert": "tls/node.pem", "key": "tls/node.key"}
    file = prepare(
        "contacts_fast.yaml",
        directory,
        **{
            "nodes.store.write.tls": {**server, "client_auth": True},
            "nodes.store.read.tls": server,
            "nodes.reader.tls": {**server, "client_auth": True},
            "nodes.writer.client_tls": node,
            "nodes.reader.client_tls": node,
            "nodes.gateway.client_tls": node,
        },
    )
    system = System(file).start()
    yield system
    system.stop()


def read(directory: Path, name: str) -> bytes:
    return (directory / name).read_bytes()


def add_contacts(system: System, channel: grpc.Channel, node: str = "writer"):
    service = "contacts.ContactWriteService"
    request = system.protos.message_class("contacts.AddContactsRequest")()
    request.contacts.add(name="Over TLS")
    response_class = system.protos.class_of(
        system.protos.method(service, "AddContacts").output_type
    )
    call = channel.unary_unary(
        f"/{service}/AddContacts",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    return call(request, metadata=Credentials(node, system.token(node)).metadata, timeout=5)


def write_target(system: System) -> str:
    return system.topology.nodes["store"].write.listen.target


def test_the_system_runs_over_tls(secured):
    assert "write service contacts.ContactWriteService on" in secured.output()
    assert "over TLS with client certificates" in secured.output()
    added = secured.data('mutation { addContact(name: "Tess Elle") { id } }')["addContact"]["id"]
    query = f'{{ contact(id: "{added}") {{ name }} }}'
    assert wait_until(lambda: secured.data(query)["contact"]) == {"name": "Tess Elle"}


def test_a_caller_with_the_ca_and_a_client_certificate_is_served(secured):
    tls = secured.file.parent / "tls"
    credentials = grpc.ssl_channel_credentials(
        read(tls, "ca.pem"), read(tls, "node.key"), read(tls, "node.pem")
    )
    with grpc.secure_channel(write_target(secured), credentials) as channel:
        assert add_contacts(secured, channel).count == 1


def test_a_plain_text_caller_is_refused(secured):
    with grpc.insecure_channel(write_target(secured)) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            add_contacts(secured, channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_caller_without_a_client_certificate_is_refused(secured):
    credentials = grpc.ssl_channel_credentials(read(secured.file.parent / "tls", "ca.pem"))
    with grpc.secure_channel(write_target(secured), credentials) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            add_contacts(secured, channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_caller_with_a_certificate_from_another_ca_is_refused(secured):
    other = secured.file.parent / "other"
    credentials = grpc.ssl_channel_credentials(
        read(secured.file.parent / "tls", "ca.pem"),
        read(other, "node.key"),
        read(other, "node.pem"),
    )
    with grpc.secure_channel(write_target(secured), credentials) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            add_contacts(secured, channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_caller_does_not_trust_a_server_its_ca_did_not_sign(secured):
    """The read service needs no client certificate; a caller checking it against another CA
    refuses it."""
    other = secured.file.parent / "other"
    target = secured.topology.nodes["store"].read.listen.target
    service = "contacts.ContactReadService"
    response_class = secured.protos.class_of(
        secured.protos.method(service, "GetContact").output_type
    )
    with grpc.secure_channel(
        target, grpc.ssl_channel_credentials(read(other, "other.pem"))
    ) as channel:
        call = channel.unary_unary(
            f"/{service}/GetContact",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(
                secured.protos.message_class("contacts.GetContactRequest")(id="x"),
                metadata=Credentials("reader", secured.token("reader")).metadata,
                timeout=5,
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_does_not_replace_the_node_credentials(secured):
    """A caller with a valid certificate is still refused a service its node is not wired to."""
    tls = secured.file.parent / "tls"
    credentials = grpc.ssl_channel_credentials(
        read(tls, "ca.pem"), read(tls, "node.key"), read(tls, "node.pem")
    )
    with grpc.secure_channel(write_target(secured), credentials) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            add_contacts(secured, channel, node="reader")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
