"""The projections bench/projections.py runs (copied beside its topology as bench_projections).

ChangeTally keeps, per loan, the positions of its changes (a MemberLoans document whose `loans`
are the positions): the log then says when each change reached the read model. BookCopies copies
each book into a read model of its own, one write per change: what a replay is timed on."""

from __future__ import annotations

from cqrs_flow.plugins import Event, ProjectionPlugin, ReadModel


class ChangeTally(ProjectionPlugin):
    async def on_Loan(self, event: Event, model: ReadModel) -> None:
        row = await model.get(event.key) or {"member": event.key, "loans": []}
        row["loans"].append(str(event.position))
        row["on_loan"] = len(row["loans"])
        model.put(event.key, row)


class BookCopies(ProjectionPlugin):
    async def on_Book_insert(self, event: Event, model: ReadModel) -> None:
        assert event.document is not None
        model.put(event.key, event.document)

    async def on_Book_update(self, event: Event, model: ReadModel) -> None:
        assert event.document is not None
        model.put(event.key, event.document)

    async def on_Book_delete(self, event: Event, model: ReadModel) -> None:
        model.delete(event.key)
