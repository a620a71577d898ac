"""The gateway's book of commands: queued, then what the writers report."""

from __future__ import annotations

import asyncio
import json

import pytest

from cqrs_flow.contracts.status import online_message, writer_online
from cqrs_flow.nodes.gateway.commands import CommandBook
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.topology.model import RecordRetention


def report(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_queued_then_applied():
    book = CommandBook()
    book.queued("c1", "add_contact", "k1")
    assert book.get("c1") == {
        "id": "c1",
        "state": "QUEUED",
        "command": "add_contact",
        "key": "k1",
        "reason": None,
        "subject": None,
    }
    assert book.heard(report(id="c1", state="APPLIED", command="add_contact", key="k1", reason=""))
    assert book.get("c1")["state"] == "APPLIED"


def test_who_asked_is_kept_from_the_queued_entry_or_taken_from_the_writers_report():
    book = CommandBook()
    book.queued("c1", "add_loan", "k1", "ada")
    assert book.get("c1")["subject"] == "ada"
    assert book.heard(report(id="c1", state="APPLIED", command="add_loan", key="k1", reason=""))
    assert book.get("c1")["subject"] == "ada"  # the report did not say: as the gateway knew it
    assert book.heard(report(id="c2", state="APPLIED", command="add_loan", subject="grace"))
    assert book.get("c2")["subject"] == "grace"  # queued by another gateway


def test_a_failure_keeps_its_reason_and_a_report_from_another_gateway_is_kept_too():
    book = CommandBook()
    assert book.heard(
        report(
            id="elsewhere", state="FAILED", command="update_contact", key="k", reason="NOT_FOUND"
        )
    )
    assert book.get("elsewhere")["reason"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"[]",
        report(id=5, state="APPLIED"),
        report(id="x", state="LOST"),
        report(state="APPLIED"),
    ],
)
def test_what_is_not_a_report_is_ignored(payload):
    book = CommandBook()
    assert not book.heard(payload)
    assert book.get("x") is None


def test_the_oldest_entries_go_first():
    book = CommandBook(RecordRetention(memory_count=2))
    for i in range(3):
        book.queued(f"c{i}", "add_contact", None)
    assert book.get("c0") is None and book.get("c1") and book.get("c2")
    assert len(book) == 2


def test_with_a_database_the_book_outlives_the_gateway_and_keeps_its_count(tmp_path):
    """On disk: commandStatus answers after a restart, and no more than `count` are kept."""

    async def run():
        outbox = await Outbox.open(tmp_path, 60.0)
        book = CommandBook(RecordRetention(count=3, memory_count=1), outbox.database)
        for i in range(5):
            book.queued(f"c{i}", "add_contact", f"k{i}")
        book.heard(report(id="c4", state="APPLIED", command="add_contact", key="k4"))
        await outbox.database.settled()
        await outbox.close()
        outbox = await Outbox.open(tmp_path, 60.0)
        book = CommandBook(RecordRetention(count=3, memory_count=1), outbox.database)
        found = {i: await book.lookup(f"c{i}") for i in range(5)}
        rows = await outbox.database.read(
            lambda c: c.execute("SELECT count(*) FROM statuses").fetchone()[0]
        )
        await outbox.close()
        return found, rows

    found, rows = asyncio.run(run())
    queued = {"id": "c3", "state": "QUEUED", "command": "add_contact", "key": "k3", "subject": None}
    assert found[4]["state"] == "APPLIED" and found[3] == {**queued, "reason": None}
    assert rows <= 5 and found[2] is not None  # pruned every PRUNE_EVERY writes, not each one


def test_statuses_older_than_the_retention_time_are_forgotten():
    book = CommandBook(RecordRetention(time=60.0))
    now = [1000.0]
    book._records.clock = lambda: now[0]
    book.queued("old", "add_contact", None)
    now[0] += 61
    book.queued("new", "add_contact", None)
    assert book.get("old") is None and book.get("new") is not None
    assert asyncio.run(book.lookup("old")) is None


def test_status_and_dead_letter_topics_must_not_be_command_topics_or_caught_by_filters(
    edit, problems_of
):
    text = edit(("    delay: 3s\n", "    delay: 3s\n    dead_letter: CONTACT/ADD\n"))
    problems = problems_of(text)
    assert any(
        p.path == "nodes.writer.dead_letter"
        and "also the topic of command add_contact" in p.message
        for p in problems
    )
    text = edit(
        ("    commands: [add_contact, update_contact, delete_contact]\n", "    topics: ['#']\n")
    )
    problems = problems_of(text)
    assert any(
        p.path == "nodes.writer.topics[0]" and "also matches 'contacts/status'" in p.message
        for p in problems
    )


def test_settled_waits_for_the_writers_report_and_unknown_ids_settle_at_once():
    import asyncio

    async def scenario():
        book = CommandBook()
        book.queued("c1", "add_contact", "k")
        waiting = asyncio.ensure_future(book.settled("c1"))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        book.heard(report(id="c1", state="APPLIED", command="add_contact", key="k"))
        return (
            await asyncio.wait_for(waiting, 1),
            await book.settled("nope"),
            await book.settled("c1"),
        )

    settled, unknown, again = asyncio.run(scenario())
    assert settled["state"] == "APPLIED" and unknown is None and again == settled


def test_a_writers_online_message_names_it_and_its_topics_and_is_no_report():
    message = online_message("writer.2", ["CONTACT/ADD", "CONTACT/DELETE"])
    assert writer_online(message) == ("writer.2", ["CONTACT/ADD", "CONTACT/DELETE"])
    assert CommandBook().heard(message) is None


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"[" * 100_000,
        b"[]",
        b'"writer"',
        report(online="w"),
        report(online=1, topics=[]),
        report(online="w", topics="T"),
        report(online="w", topics=["T", 2]),
        report(id="c", state="APPLIED"),
    ],
)
def test_what_is_not_an_online_message_is_none(payload):
    assert writer_online(payload) is None
