"""The gateway's book of commands: queued, then what the writers report."""

from __future__ import annotations

import json

import pytest

from cqrs_flow.contracts.status import online_message, writer_online
from cqrs_flow.nodes.gateway.commands import CommandBook


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
    book = CommandBook(capacity=2)
    for i in range(3):
        book.queued(f"c{i}", "add_contact", None)
    assert book.get("c0") is None and book.get("c1") and book.get("c2")


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
