"""examples/library/projections.py, the loans projection's handlers, as plain Python: events in,
the read model out, no process."""

from __future__ import annotations

import asyncio
import sys

import pytest

from cqrs_flow.plugins import Event, MemoryReadModel

from .helpers import ROOT


@pytest.fixture(scope="module")
def plugin():
    sys.path.insert(0, str(ROOT / "examples" / "library"))
    try:
        from projections import LoansPerMember
    finally:
        sys.path.remove(str(ROOT / "examples" / "library"))
    return LoansPerMember()


def loan(id, member="ada", book="b1", due="2027-02-01", returned=False):
    return {"id": id, "book_id": book, "member": member, "due": due, "returned": returned,
            "updated_at": "2027-01-01T00:00:00.000Z"}  # fmt: skip


def run(plugin, model, *events):
    async def go():
        for position, (op, after, before) in enumerate(events, 1):
            key = (after or before)["id"]
            await plugin.handle(Event(position, "Loan", key, op, after, before), model)

    asyncio.run(go())
    return model.documents


def test_loans_are_counted_per_member_with_the_earliest_due_date(plugin):
    documents = run(
        plugin,
        MemoryReadModel(),
        ("insert", loan("l1", due="2027-03-01"), None),
        ("insert", loan("l2", book="b2", due="2027-02-01"), None),
        ("insert", loan("l3", member="bob"), None),
    )
    assert documents["ada"] == {
        "member": "ada",
        "loans": ["l1", "l2"],
        "books": ["b1", "b2"],
        "dues": ["2027-03-01", "2027-02-01"],
        "on_loan": 2,
        "next_due": "2027-02-01",
    }
    assert documents["bob"]["on_loan"] == 1


def test_a_return_a_removal_and_a_new_member_move_the_loan(plugin):
    documents = run(
        plugin,
        MemoryReadModel(),
        ("insert", loan("l1"), None),
        ("insert", loan("l2", due="2027-01-10"), None),
        ("update", loan("l1", returned=True), loan("l1")),  # returned
        ("update", loan("l2", member="bob", due="2027-01-10"), loan("l2", due="2027-01-10")),
    )
    assert "ada" not in documents  # nothing left on loan: no document
    assert documents["bob"]["loans"] == ["l2"]
    documents = run(plugin, MemoryReadModel(documents), ("delete", None, loan("l2", member="bob")))
    assert documents == {}


def test_changes_that_change_nothing_leave_the_model_alone(plugin):
    documents = run(
        plugin,
        MemoryReadModel(),
        ("insert", loan("l1", returned=True), None),  # lent and back already
        ("update", loan("l9"), loan("l9", returned=True)),  # the model never had it: lent now
        ("update", loan("l9"), loan("l9")),  # the same again
        ("delete", None, loan("l7")),  # never seen
    )
    assert list(documents) == ["ada"] and documents["ada"]["loans"] == ["l9"]
