"""A reader with a read model (cqrs_flow.nodes.reader.answers): who answers each read, the model
or the store, over gRPC against a real store node in-process."""

from __future__ import annotations

import grpc
import pytest

from cqrs_flow.nodes.reader import ReaderService
from cqrs_flow.nodes.reader.answers import READ_SOURCE, READ_STALENESS
from cqrs_flow.protobuf.compiler import DOCUMENTS_SERVICE
from cqrs_flow.security.tokens import ENV_SECRET, credentials_from_env
from cqrs_flow.transport.rpc import CALL_METADATA, READ_AFTER_COMMAND, ServiceClient

from ...helpers import until
from ..library import SECRET, Library


@pytest.fixture
def library(tmp_path, proto_cache):
    return Library(
        tmp_path,
        {"nodes.reader.read_model": {"entities": ["Book", "Loan"], "staleness": "300ms"}},
    )


async def start_reader(library: Library) -> ReaderService:
    node = library.topology.nodes["reader"]
    credentials = credentials_from_env(library.topology, "reader", {ENV_SECRET: SECRET})
    reader = ReaderService(library.topology, node, library.protos, credentials)
    await reader.start()
    library.services.append(reader)
    return reader


def clients(library: Library) -> tuple[ServiceClient, ServiceClient]:
    node = library.topology.nodes["reader"]
    service = library.protos.service(node.service)  # type: ignore[attr-defined]
    gateway = library.credentials("gateway")
    target = node.listen.target  # type: ignore[attr-defined]
    reads = ServiceClient(library.protos, service, target, gateway)
    return reads, reads.sibling(library.protos.service(DOCUMENTS_SERVICE))


async def source_of(client: ServiceClient, rpc: str, request) -> tuple[object, str, str]:
    """The answer, and where it came from (READ_SOURCE: "model", or "" for the store)."""
    method = client.service.methods_by_name[rpc]
    call = client._channel.unary_unary(
        f"/{client.service.full_name}/{rpc}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=library_class(client, method.output_type).FromString,
    )(request, metadata=client._metadata(), timeout=5)
    answer = await call
    trailing = dict(await call.trailing_metadata() or ())
    return answer, str(trailing.get(READ_SOURCE, "")), str(trailing.get(READ_STALENESS, ""))


def library_class(client: ServiceClient, descriptor):
    return client._protos.class_of(descriptor)


def add_book(writer: ServiceClient, library: Library, id: str, title: str, command: str = ""):
    book = library.protos.message_class("library.Book")(id=id, title=title, author_id="a1")
    request = writer.request_class("AddBook")(book=book)
    if command:
        request.command_id = command
    return writer.call("AddBook", request)


def test_reads_come_from_the_model_and_from_the_store_once_it_is_stale(library):
    async def scenario():
        store = await library.start_store()
        writer = library.client("write", "write", "writer")
        await add_book(writer, library, "b1", "Dune")
        reader = await start_reader(library)
        answers = reader.answers
        assert answers is not None
        await until(lambda: answers.model.fresh(0.3))
        reads, documents = clients(library)
        get = reads.request_class("GetBook")(id="b1")
        book, source, _ = await source_of(reads, "GetBook", get)
        assert (book.book.title, source) == ("Dune", "model")
        find = documents.request_class("Find")(queries=[{"entity": "Book", "first": 10}])
        page, source, _ = await source_of(documents, "Find", find)
        assert (len(page.pages[0].documents), source) == (1, "model")
        assert page.log_position == answers.model.applied
        missing = reads.request_class("GetBook")(id="nope")
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await source_of(reads, "GetBook", missing)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        assert gone.value.details() == "no book with id 'nope'"  # as the store says it
        # an entity the model does not keep: the store answers
        find = documents.request_class("Find")(queries=[{"entity": "Author", "first": 10}])
        _, source, _ = await source_of(documents, "Find", find)
        assert source == ""
        # the store away: the model answers beyond its bound, and says how stale
        await store.stop()
        library.services.remove(store)
        await until(lambda: not answers.model.fresh(0.3))
        book, source, staleness = await source_of(reads, "GetBook", get)
        assert (book.book.title, source) == ("Dune", "model") and float(staleness) > 0.3
        assert answers.facts()["answering"] == "store"
        assert reader.telemetry.dependencies() == {"store": False, "read_model": False}
        for client in (writer, reads):
            await client.close()

    library.run(lambda _: scenario())


def test_a_read_after_a_command_reflects_it(library):
    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        reader = await start_reader(library)
        assert reader.answers is not None
        model = reader.answers.model
        await until(lambda: model.fresh(0.3))
        reads, _ = clients(library)
        command = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
        await add_book(writer, library, "b2", "Emma", command)
        token = CALL_METADATA.set(((READ_AFTER_COMMAND, command),))
        try:
            book, source, _ = await source_of(
                reads, "GetBook", reads.request_class("GetBook")(id="b2")
            )
        finally:
            CALL_METADATA.reset(token)
        assert (book.book.title, source) == ("Emma", "model")
        assert model.has_seen(command)
        for client in (writer, reads):
            await client.close()

    library.run(lambda _: scenario())


def test_without_serve_stale_a_store_away_is_unavailable(tmp_path, proto_cache):
    library = Library(
        tmp_path, {"nodes.reader.read_model": {"staleness": "200ms", "serve_stale": False}}
    )

    async def scenario():
        store = await library.start_store()
        reader = await start_reader(library)
        assert reader.answers is not None
        await until(lambda: reader.answers.model.fresh(0.2))  # type: ignore[union-attr]
        await store.stop()
        library.services.remove(store)
        await until(lambda: not reader.answers.model.fresh(0.2))  # type: ignore[union-attr]
        reads, _ = clients(library)
        with pytest.raises(grpc.aio.AioRpcError) as away:
            await source_of(reads, "GetBook", reads.request_class("GetBook")(id="b1"))
        assert away.value.code() == grpc.StatusCode.UNAVAILABLE
        await reads.close()

    library.run(lambda _: scenario())
