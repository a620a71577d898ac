"""Calls within one process (cqrs_flow.transport.local): a reader placed in its gateway's process
is called without the network, through the same caller check and handlers as over gRPC."""

from __future__ import annotations

import grpc
import pytest

from cqrs_flow.nodes.reader import ReaderService
from cqrs_flow.protobuf.compiler import DOCUMENTS_SERVICE
from cqrs_flow.security.tokens import ENV_SECRET, Credentials, credentials_from_env
from cqrs_flow.transport import local
from cqrs_flow.transport.rpc import ServiceClient

from ..nodes.library import SECRET, Library


@pytest.fixture
def library(tmp_path, proto_cache):
    return Library(tmp_path, {"nodes.reader.process": "gateway"})


def test_a_client_in_the_readers_process_calls_it_directly_with_the_same_checks(library):
    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        book = library.protos.message_class("library.Book")(id="b1", title="Dune")
        await writer.call("AddBook", writer.request_class("AddBook")(book=book))
        node = library.topology.nodes["reader"]
        credentials = credentials_from_env(library.topology, "reader", {ENV_SECRET: SECRET})
        reader = ReaderService(library.topology, node, library.protos, credentials)
        await reader.start()
        library.services.append(reader)
        target = node.listen.target
        assert local.local_server(target) is not None
        service = library.protos.service(node.service)
        gateway = ServiceClient(library.protos, service, target, library.credentials("gateway"))
        found = await gateway.call("GetBook", gateway.request_class("GetBook")(id="b1"))
        assert found.book.title == "Dune"
        assert reader.metrics.grpc_requests.labels(node.service, "GetBook", "OK")._value.get() == 1
        documents = gateway.sibling(library.protos.service(DOCUMENTS_SERVICE))
        find = documents.request_class("Find")(queries=[{"entity": "Book", "first": 5}])
        assert len((await documents.call("Find", find)).pages[0].documents) == 1
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await gateway.call("GetBook", gateway.request_class("GetBook")(id="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        # the caller check: a node the topology does not wire to the reader is refused
        stranger = ServiceClient(
            library.protos, service, target, Credentials("writer", "not-its-token")
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stranger.call("GetBook", stranger.request_class("GetBook")(id="b1"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await reader.stop()
        library.services.remove(reader)
        assert local.local_server(target) is None  # released with the reader
        for client in (writer, gateway, stranger):
            await client.close()

    library.run(lambda _: scenario())
