"""The store node's change log service (cqrs_flow.Changes on its read side) and the service
projections write with (cqrs_flow.Projections on its write side), called over gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from .library import Library


@pytest.fixture
def library(tmp_path, proto_cache):
    return Library(tmp_path)


async def follow(changes, **request):
    return [c async for c in changes.stream("Follow", changes.request_class("Follow")(**request))]


def test_follow_streams_every_change_from_a_position_and_info_sums_them_up(library):
    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        changes = library.client("changes", "read", "reader")
        await library.lend(writer, library.loan("l1"), library.loan("l2", member="bob"))
        update = writer.request_class("UpdateLoan")(loan=library.loan("l1", returned=True))
        await writer.call("UpdateLoan", update)
        found = await follow(changes, after=0)
        assert [(c.position, c.entity, c.key, c.op) for c in found] == [
            (1, "Loan", "l1", "insert"),
            (2, "Loan", "l2", "insert"),
            (3, "Loan", "l1", "update"),
        ]
        loan_class = library.protos.message_class("library.Loan")
        after = loan_class.FromString(found[2].document)
        before = loan_class.FromString(found[2].previous)
        assert (after.returned, before.returned) == (True, False)
        assert found[0].previous == b"" and found[0].at.endswith("Z")
        assert [c.key for c in await follow(changes, after=2)] == ["l1"]
        assert await follow(changes, after=0, entities=["Book"]) == []
        info = await changes.call("Info", changes.request_class("Info")())
        assert (info.first, info.last, info.changes) == (1, 3, 3) and info.bytes > 0
        for client in (writer, changes):
            await client.close()

    library.run(lambda _: scenario())


@pytest.mark.parametrize("data", [None, "data"], ids=["memory", "sqlite"])
def test_a_change_says_who_asked_for_it_as_the_request_names_them(tmp_path, proto_cache, data):
    """The subject the gateway put in the command (the request field the topology's `subject`
    names) is in the change log, with every change the request made; a request without one (a
    book here: its requests have no such field) says no one."""
    library = Library(tmp_path, {"nodes.store.data": data} if data else None)

    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        changes = library.client("changes", "read", "reader")
        add = writer.request_class("AddLoan")
        await writer.call("AddLoan", add(loan=library.loan("l1"), subject="ada"))
        await writer.call("AddLoan", add(loan=library.loan("l2", member="bob")))
        update = writer.request_class("UpdateLoan")
        await writer.call(
            "UpdateLoan", update(loan=library.loan("l1", returned=True), subject="lee")
        )
        book = library.protos.message_class("library.Book")(id="b1", title="Dune")
        await writer.call("AddBook", writer.request_class("AddBook")(book=book))
        found = await follow(changes, after=0)
        assert [(c.entity, c.key, c.op, c.subject) for c in found] == [
            ("Loan", "l1", "insert", "ada"),
            ("Loan", "l2", "insert", ""),
            ("Loan", "l1", "update", "lee"),
            ("Book", "b1", "insert", ""),
        ]
        for client in (writer, changes):
            await client.close()

    library.run(lambda _: scenario())


def test_follow_batches_sends_the_same_changes_several_at_a_time(library):
    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        changes = library.client("changes", "read", "reader")
        await library.lend(writer, *(library.loan(f"l{i}") for i in range(7)))
        request = changes.request_class("FollowBatches")(after=2, entities=["Loan"])
        batches = [b async for b in changes.stream("FollowBatches", request)]
        assert [[c.key for c in b.changes] for b in batches] == [["l2", "l3", "l4", "l5", "l6"]]
        assert batches[0].through == 7
        one_by_one = await follow(changes, after=2, entities=["Loan"])
        assert list(batches[0].changes) == one_by_one
        assert [b async for b in changes.stream(
            "FollowBatches", changes.request_class("FollowBatches")(after=0, entities=["Book"])
        )] == []  # fmt: skip
        for client in (writer, changes):
            await client.close()

    library.run(lambda _: scenario())


def test_a_batch_of_large_documents_is_cut_in_several(library, monkeypatch):
    import cqrs_flow.stores.changes as changes_module

    monkeypatch.setattr(changes_module, "BATCH_BYTES", 200)

    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        changes = library.client("changes", "read", "reader")
        await library.lend(writer, *(library.loan(f"l{i}") for i in range(6)))
        request = changes.request_class("FollowBatches")(after=0)
        batches = [b async for b in changes.stream("FollowBatches", request)]
        assert len(batches) > 1
        assert [c.key for b in batches for c in b.changes] == [f"l{i}" for i in range(6)]
        assert [b.through for b in batches] == [b.changes[-1].position for b in batches]
        for client in (writer, changes):
            await client.close()

    library.run(lambda _: scenario())


def test_a_follower_that_waits_gets_each_change_as_it_is_made(library):
    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        changes = library.client("changes", "read", "reader")
        request = changes.request_class("Follow")(after=0, wait=True)
        call = changes.stream("Follow", request)
        await library.lend(writer, library.loan("l1"))
        first = await asyncio.wait_for(call.read(), 5)
        await library.lend(writer, library.loan("l2"))
        second = await asyncio.wait_for(call.read(), 5)
        assert (first.key, second.key, second.position) == ("l1", "l2", 2)
        call.cancel()
        for client in (writer, changes):
            await client.close()

    library.run(lambda _: scenario())


def test_what_cannot_be_followed_is_refused_with_its_reason(library):
    async def scenario():
        await library.start_store()
        changes = library.client("changes", "read", "reader")
        with pytest.raises(grpc.aio.AioRpcError) as ahead:
            await follow(changes, after=5)
        assert ahead.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "ahead of the change log, whose last position is 0" in ahead.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await follow(changes, after=0, entities=["Lone"])
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "this store holds no entity 'Lone'" in unknown.value.details()
        # the writer may not read the log; the reader may not write a read model
        writer_view = library.client("changes", "read", "writer")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await follow(writer_view, after=0)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        reader_writes = library.client("projections", "write", "reader")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await reader_writes.call("State", reader_writes.request_class("State")())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for client in (changes, writer_view, reader_writes):
            await client.close()

    library.run(lambda _: scenario())


def test_retention_drops_the_oldest_changes_and_a_follower_behind_is_told(tmp_path, proto_cache):
    library = Library(tmp_path, {"nodes.store.retention": {"changes": 2}})

    async def scenario():
        store = await library.start_store()
        writer = library.client("write", "write", "writer")
        changes = library.client("changes", "read", "reader")
        await library.lend(writer, *(library.loan(f"l{i}") for i in range(5)))
        await store.log_.trim()  # what the node does once a second
        info = await changes.call("Info", changes.request_class("Info")())
        assert (info.first, info.last, info.changes) == (4, 5, 2)
        with pytest.raises(grpc.aio.AioRpcError) as behind:
            await follow(changes, after=1)
        assert behind.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "the oldest change kept is 4" in behind.value.details()
        assert [c.key for c in await follow(changes, after=3)] == ["l3", "l4"]
        for client in (writer, changes):
            await client.close()

    library.run(lambda _: scenario())


def test_a_find_says_the_log_position_it_was_read_at(library):
    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        documents = library.client("documents", "read", "reader")
        await library.lend(writer, library.loan("l1"), library.loan("l2"))
        request = documents.request_class("Find")(queries=[{"entity": "Loan"}])
        answer = await documents.call("Find", request)
        assert (len(answer.pages[0].documents), answer.log_position) == (2, 2)
        for client in (writer, documents):
            await client.close()

    library.run(lambda _: scenario())


def test_a_projection_writes_its_read_model_with_its_position_once(library):
    async def scenario():
        await library.start_store()
        projections = library.client("projections", "write", "loans")
        documents = library.client("documents", "read", "reader")
        member = library.protos.message_class("library.MemberLoans")
        state = await projections.call("State", projections.request_class("State")())
        assert (state.live, state.position) == (0, 0)
        apply = projections.request_class("Apply")(generation=0, position=7)
        apply.writes.add(key="ada", document=member(member="ada", on_loan=1).SerializeToString())
        answer = await projections.call("Apply", apply)
        assert answer.applied and answer.state.position == 7
        assert not (await projections.call("Apply", apply)).applied  # sent again: done already
        read = projections.request_class("Read")(generation=0, keys=["ada", "bob"])
        found = await projections.call("Read", read)
        assert [d.key for d in found.documents] == ["ada"]
        stored = member.FromString(found.documents[0].document)
        assert stored.on_loan == 1 and stored.updated_at  # the entity's timestamp is set
        request = documents.request_class("Find")(queries=[{"entity": "MemberLoans"}])
        assert len((await documents.call("Find", request)).pages[0].documents) == 1
        bad = projections.request_class("Apply")(generation=0, position=8)
        bad.writes.add(key="x", document=b"\xff\xff")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await projections.call("Apply", bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for client in (projections, documents):
            await client.close()

    library.run(lambda _: scenario())


def test_a_replay_builds_a_generation_beside_the_live_one_and_switches(library):
    async def scenario():
        await library.start_store()
        projections = library.client("projections", "write", "loans")
        documents = library.client("documents", "read", "reader")
        member = library.protos.message_class("library.MemberLoans")

        async def apply(generation, position, *members):
            request = projections.request_class("Apply")(generation=generation, position=position)
            for name in members:
                request.writes.add(key=name, document=member(member=name).SerializeToString())
            return await projections.call("Apply", request)

        async def listed():
            request = documents.request_class("Find")(queries=[{"entity": "MemberLoans"}])
            page = (await documents.call("Find", request)).pages[0]
            return [member.FromString(d).member for d in page.documents]

        await apply(0, 3, "old")
        begun = await projections.call("Begin", projections.request_class("Begin")())
        assert (begun.live, begun.generation, begun.position) == (0, 1, 0)
        await apply(1, 2, "new")
        assert await listed() == ["old"]  # the live generation answers meanwhile
        switched = await projections.call(
            "Switch", projections.request_class("Switch")(generation=1)
        )
        assert (switched.live, switched.position) == (1, 2)
        assert await listed() == ["new"]
        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await apply(0, 4, "late")  # the live projection before it noticed the switch
        assert stale.value.code() == grpc.StatusCode.ABORTED
        changes = library.client("changes", "read", "reader")
        followed = [c.key async for c in changes.stream(
            "Follow", changes.request_class("Follow")(after=0, entities=["MemberLoans"])
        )]  # fmt: skip
        assert followed == ["new"]  # changes of the live generation only
        for client in (projections, documents, changes):
            await client.close()

    library.run(lambda _: scenario())


def test_a_reader_passes_the_change_log_on_to_its_callers(library):
    from cqrs_flow.nodes.reader import ReaderService
    from cqrs_flow.protobuf.compiler import CHANGES_SERVICE
    from cqrs_flow.security.tokens import ENV_SECRET, credentials_from_env
    from cqrs_flow.transport.rpc import ServiceClient

    from .library import SECRET

    async def scenario():
        await library.start_store()
        node = library.topology.nodes["reader"]
        credentials = credentials_from_env(library.topology, "reader", {ENV_SECRET: SECRET})
        reader = ReaderService(library.topology, node, library.protos, credentials)
        await reader.start()
        library.services.append(reader)
        writer = library.client("write", "write", "writer")
        await library.lend(writer, library.loan("l1"), library.loan("l2"))
        changes = ServiceClient(
            library.protos,
            library.protos.service(CHANGES_SERVICE),
            node.listen.target,
            library.credentials("gateway"),
        )
        assert [c.key for c in await follow(changes, after=0)] == ["l1", "l2"]
        request = changes.request_class("FollowBatches")(after=1)
        assert [len(b.changes) async for b in changes.stream("FollowBatches", request)] == [1]
        info = await changes.call("Info", changes.request_class("Info")())
        assert (info.first, info.last) == (1, 2)
        with pytest.raises(grpc.aio.AioRpcError) as ahead:
            await follow(changes, after=9)
        assert ahead.value.code() == grpc.StatusCode.OUT_OF_RANGE  # the store's answer, passed on
        for client in (writer, changes):
            await client.close()

    library.run(lambda _: scenario())
