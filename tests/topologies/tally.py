"""A projection for the tests: for each key of an entity, the positions of its changes, in the
order handled (a MemberLoans document: `member` the key, `loans` the positions, `on_loan` how
many). A change lost or handled twice shows at once, which an idempotent projection would hide."""

from __future__ import annotations

from cqrs_flow.plugins import Event, ProjectionPlugin, ReadModel


class ChangeTally(ProjectionPlugin):
    async def on_Loan(self, event: Event, model: ReadModel) -> None:
        row = await model.get(event.key) or {"member": event.key, "loans": []}
        row["loans"].append(str(event.position))
        row["on_loan"] = len(row["loans"])
        row["next_due"] = event.op
        model.put(event.key, row)
