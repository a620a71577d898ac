"""Who asked for each change (stores/log.asked_by): every backend's change log records the
subject its writes were made for, in the change's own atomic step, writes made at the same time
for different subjects included (the SQLite database commits them in one transaction); a write
no one is known to have asked for records none. Runs over the embedded, durable and emulated
MongoDB logs, and a real MongoDB server when MONGODB_URL is set."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.stores.log import asked_by, current_subject

from .log_backends import LOGGED, open_logged, open_mongodb

MONGODB_URL = os.environ.get("MONGODB_URL")


@pytest.fixture(params=[*LOGGED, "mongodb"])
def logged(request, tmp_path):
    """An async factory of (stores, log) of the backend under test, and what drops it after."""
    databases: list[str] = []

    async def make(*collections: str):
        if request.param != "mongodb":
            return await open_logged(request.param, tmp_path, collections)
        databases.append(f"cqrs_flow_test_{uuid.uuid4().hex[:12]}")
        assert MONGODB_URL is not None
        return await open_mongodb(MONGODB_URL, databases[-1], collections)

    if request.param.startswith("mongodb"):
        pytest.importorskip("pymongo", reason="the mongodb extra is not installed")
    if request.param == "mongodb" and not MONGODB_URL:
        pytest.skip("MONGODB_URL is not set: no MongoDB server to run against")
    yield make
    if databases:
        from pymongo import MongoClient

        client: MongoClient = MongoClient(MONGODB_URL)
        for name in databases:
            client.drop_database(name)
        client.close()


def test_asked_by_sets_the_subject_for_the_block_only():
    assert current_subject() is None
    with asked_by("ada"):
        assert current_subject() == "ada"
        with asked_by(""):
            assert current_subject() is None  # "" is no one
        assert current_subject() == "ada"
    assert current_subject() is None


def test_each_change_records_who_asked_for_it(logged):
    async def scenario():
        (loans, books), log = await logged("loans", "books")
        clock = CommandClock()
        with asked_by("ada"):
            await loans.insert("l1", {"id": "l1", "member": "ada"}, clock.next_id())
            await loans.update("l1", {"returned": True}, clock.next_id())
        await books.insert("b1", {"id": "b1"}, clock.next_id())  # no one known
        with asked_by("lee"):
            await books.insert_many({"b2": {"id": "b2"}, "b3": {"id": "b3"}}, clock.next_id())
            await loans.delete("l1", clock.next_id())
            await books.delete_many(["b2"], clock.next_id())
        changes = (await log.read(0, 100, None)).changes
        assert [(c.collection, c.key, c.op, c.subject) for c in changes] == [
            ("loans", "l1", "insert", "ada"),
            ("loans", "l1", "update", "ada"),
            ("books", "b1", "insert", None),
            ("books", "b2", "insert", "lee"),
            ("books", "b3", "insert", "lee"),
            ("loans", "l1", "delete", "lee"),
            ("books", "b2", "delete", "lee"),
        ]
        for store in (loans, books):
            await store.close()

    asyncio.run(scenario())


def test_writes_made_at_once_for_different_subjects_each_record_their_own(logged):
    """Writes waiting together go in one SQLite transaction: each runs in its caller's context."""

    async def scenario():
        (loans,), log = await logged("loans")
        clock = CommandClock()

        async def lend(subject: str, key: str) -> None:
            with asked_by(subject):
                await loans.insert(key, {"id": key, "member": subject}, clock.next_id())

        await asyncio.gather(*(lend(f"m{i}", f"l{i}") for i in range(20)))
        changes = (await log.read(0, 100, None)).changes
        assert len(changes) == 20
        assert all(c.subject == f"m{c.key[1:]}" for c in changes), changes
        await loans.close()

    asyncio.run(scenario())
