"""A reader's read model (cqrs_flow.nodes.reader.model): its bootstrap from the store's document
service and its follow of the store's change log, against a real store node in-process."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from cqrs_flow.nodes.reader.model import ReadModel, Rebootstrap

from ...helpers import until
from ..library import Library


@pytest.fixture
def library(tmp_path, proto_cache):
    return Library(tmp_path)


def model_of(library: Library, page: int = 3, probe: float = 0.05) -> ReadModel:
    topology = library.topology
    entities = [topology.entities["Loan"], topology.entities["Book"]]
    changes = library.client("changes", "read", "reader")
    documents = library.client("documents", "read", "reader")
    return ReadModel(
        "reader",
        entities,
        lambda entity: library.protos.message_class(topology.entities[entity].document),
        changes,
        documents,
        page=page,
        probe=probe,
    )


async def loans_in_store(library: Library) -> dict[str, tuple[str, bool]]:
    documents = library.client("documents", "read", "reader")
    query = {"entity": "Loan", "first": 1000}
    answer = await documents.call("Find", documents.request_class("Find")(queries=[query]))
    loan = library.protos.message_class("library.Loan")
    await documents.close()
    found = [loan.FromString(d) for d in answer.pages[0].documents]
    return {f.id: (f.member, f.returned) for f in found}


def loans_in_model(model: ReadModel) -> dict[str, tuple[str, bool]]:
    backend = model.backends["Loan"]
    return {d["id"]: (d["member"], d.get("returned", False)) for d in backend._list(1000)}


def change(position: int, key: str, op: str = "insert", command: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        position=position, entity="Nothing", key=key, op=op, command_id=command, document=b""
    )


def test_a_batch_given_again_applies_nothing_twice_and_skips_no_position():
    model = ReadModel("reader", [], lambda e: None, None, None, page=10, probe=1.0)  # type: ignore[arg-type]
    model.applied = 1
    model.apply([change(2, "a", command="c2"), change(3, "b")], 3)
    assert model.applied == 3 and model.has_seen("c2")
    # after a break the follow starts again from 3; a batch overlapping what was applied
    model.apply([change(3, "b"), change(4, "c", command="c4")], 6)
    assert model.applied == 6  # `through`: changes of other entities are no gap either
    assert model.has_seen("c4")


def test_bootstrap_reads_every_page_then_follows_every_change_once(library):
    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        await library.lend(writer, *(library.loan(f"l{i}") for i in range(7)))
        model = model_of(library, page=3)  # 7 loans: three pages
        task = asyncio.get_running_loop().create_task(model.run())
        await until(lambda: model.ready and model.fresh(1.0))
        assert model.applied == 7 and loans_in_model(model) == await loans_in_store(library)
        # inserts, updates and deletes after the bootstrap
        await library.lend(writer, library.loan("l7", member="bob"))
        update = writer.request_class("UpdateLoan")(loan=library.loan("l1", returned=True))
        await writer.call("UpdateLoan", update)
        await writer.call("RemoveLoan", writer.request_class("RemoveLoan")(id="l2"))
        assert await model.reach(10, 5.0)
        assert loans_in_model(model) == await loans_in_store(library)
        assert model.bootstraps == 1 and model.lag() == 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for client in (writer, model.changes, model.documents):
            await client.close()

    library.run(lambda _: scenario())


def test_the_model_reads_its_documents_again_when_retention_dropped_what_it_needs(
    tmp_path, proto_cache
):
    library = Library(tmp_path, {"nodes.store.retention": {"changes": 2}})

    async def scenario():
        await library.start_store()
        writer = library.client("write", "write", "writer")
        await library.lend(writer, library.loan("l0"))
        model = model_of(library)
        follow_live = model._follow_live
        calls = 0

        async def writes_then_follows(after: int) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # between the bootstrap and the follow: the log drops `after`
                await library.lend(writer, *(library.loan(f"l{i}") for i in range(1, 8)))
            await follow_live(after)

        model._follow_live = writes_then_follows  # type: ignore[method-assign]
        task = asyncio.get_running_loop().create_task(model.run())
        await until(lambda: model.bootstraps == 2 and model.fresh(1.0))
        assert loans_in_model(model) == await loans_in_store(library)
        assert len(loans_in_model(model)) == 8
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for client in (writer, model.changes, model.documents):
            await client.close()

    library.run(lambda _: scenario())


def test_a_store_restarted_with_a_new_log_is_read_again_and_stale_meanwhile(library):
    async def scenario():
        store = await library.start_store()
        writer = library.client("write", "write", "writer")
        await library.lend(writer, *(library.loan(f"l{i}") for i in range(3)))
        model = model_of(library)
        task = asyncio.get_running_loop().create_task(model.run())
        await until(lambda: model.ready and model.fresh(1.0))
        await store.stop()
        library.services.remove(store)
        await until(lambda: not model.fresh(0.3))  # the head cannot be seen: stale
        assert loans_in_model(model) == {f"l{i}": ("ada", False) for i in range(3)}  # kept
        await library.start_store()  # in memory: empty, its log starts again at 1
        await library.lend(writer, library.loan("n1", member="eve"))
        await until(lambda: model.bootstraps == 2 and model.fresh(1.0))
        assert loans_in_model(model) == {"n1": ("eve", False)}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for client in (writer, model.changes, model.documents):
            await client.close()

    library.run(lambda _: scenario())


def test_a_head_answered_after_the_model_moved_past_it_is_no_restart_of_the_log():
    model = ReadModel("reader", [], lambda e: None, None, None, page=10, probe=1.0)  # type: ignore[arg-type]
    model.ready, model.applied = True, 10
    asked = model._asking()  # sent while the model is at 10
    model.apply([change(11, "a"), change(12, "b")], 12)  # the follow is faster than Info
    asked.last = 11
    model._saw_head(asked)  # no Rebootstrap: the log held 11 when it answered
    assert model.fresh(1.0) and model.lag() == 0
    behind = model._asking()
    behind.last = 5  # below what the model had when it asked: the log went back
    with pytest.raises(Rebootstrap):
        model._saw_head(behind)
