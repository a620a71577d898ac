"""The library's projection: what each member has on loan, built from the change log.

The `loans` node of topology.yaml runs it: it follows the changes of Loan documents and keeps a
MemberLoans document per member with a loan not returned (its loans, their books and due dates,
the earliest due date). Queries read it as the entity MemberLoans: `memberLoans(where:
{next_due: {lt: "2027-01-31"}})` lists the members late on that day.

Each handler gets the change (`event.document` after it, `event.previous` before it) and the
read model (`model`), and is plain Python: tests/unit/test_library_projection.py runs them
without any process.
"""

from __future__ import annotations

from typing import Any

from cqrs_flow.plugins import Event, ProjectionPlugin, ReadModel


class LoansPerMember(ProjectionPlugin):
    """Loans not returned, per member."""

    async def on_Loan_insert(self, event: Event, model: ReadModel) -> None:
        await self._lend(event.document, model)

    async def on_Loan_update(self, event: Event, model: ReadModel) -> None:
        # returned, given to another member, another book or date: undo, then do again
        await self._give_back(event.previous, model)
        await self._lend(event.document, model)

    async def on_Loan_delete(self, event: Event, model: ReadModel) -> None:
        await self._give_back(event.previous, model)

    async def _lend(self, loan: dict[str, Any] | None, model: ReadModel) -> None:
        if not loan or loan.get("returned") or not loan.get("member"):
            return
        member = loan["member"]
        row = await model.get(member) or {"member": member, "loans": [], "books": [], "dues": []}
        if loan["id"] in row["loans"]:
            return
        row["loans"].append(loan["id"])
        row["books"].append(loan.get("book_id", ""))
        row["dues"].append(loan.get("due", ""))
        model.put(member, _summed(row))

    async def _give_back(self, loan: dict[str, Any] | None, model: ReadModel) -> None:
        if not loan or not loan.get("member"):
            return
        row = await model.get(loan["member"])
        if row is None or loan["id"] not in row["loans"]:
            return
        i = row["loans"].index(loan["id"])
        for field in ("loans", "books", "dues"):
            del row[field][i]
        if row["loans"]:
            model.put(loan["member"], _summed(row))
        else:
            model.delete(loan["member"])


def _summed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "on_loan": len(row["loans"]), "next_due": min(row["dues"], default="")}
