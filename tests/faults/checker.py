"""The history of what clients asked and were answered, and the check of a store against it.

A client sends mutations in *lanes*: one lane sends one mutation at a time, and goes through
*lives* of one document each: an add, some updates, perhaps a delete. Every mutation writes a
value of its own (`<lane>.<life>.<step>`) into the document's value field (a contact's name, a
book's title), so the value a store holds names the one mutation whose write it is, and a
document whose value belongs to a life is that life's document, whatever its key.

Each mutation is answered OK (the gateway accepted it), ERROR (refused: nothing was queued) or
not at all (LOST: a timeout, a connection reset; it may or may not have been accepted). The
check says, of a store's documents (entity -> key -> value):

- lost:      a document whose add was answered OK is missing (and no delete of it was sent);
- twice:     a write made again after a later one: a deleted document back, or one life's
             values in two documents (an add applied twice);
- order:     an older mutation's value where a newer one answered OK should be: the newer one
             was lost, or the older one applied (again) after it; the store cannot tell which;
- error:     the write of a mutation answered ERROR in the store;
- stranger:  a document under a life's key holding a value of no mutation of that life.

A mutation whose answer was lost may be applied or not, at most once: the check counts which it
was where the store shows it (its value is there, or its delete took effect), and those whose
write a later one overwrote.

`check(history, documents, until=T)` looks only at mutations answered by time T (OK ones must be
in by now); the other kinds of violation are looked for whatever T.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["ERROR", "LOST", "OK", "Check", "History", "Op", "Violation", "check"]

OK, ERROR, LOST = "OK", "ERROR", "LOST"
ADD, UPDATE, DELETE = "add", "update", "delete"


@dataclass
class Op:
    """One mutation a client sent, and what became of its request."""

    lane: int
    life: int
    step: int  # 0 for the add, then 1, 2, ... in the order the lane sent them
    entity: str
    kind: str  # add, update, delete
    value: str | None  # the value it writes (None for a delete)
    key: str | None = None  # the document's key: an add's answer says it, later ones send it
    sent: float = 0.0
    answered: float | None = None  # None while waiting
    outcome: str | None = None  # OK, ERROR, LOST; None while waiting
    command_id: str | None = None
    message: str = ""

    @property
    def life_id(self) -> tuple[int, int]:
        return (self.lane, self.life)

    def show(self) -> str:
        what = f"{self.kind} {self.entity} {self.key or '?'} = {self.value!r}"
        return f"{what} (lane {self.lane}, life {self.life}, step {self.step}: {self.outcome})"


@dataclass
class History:
    """Every mutation sent, in the order sent."""

    ops: list[Op] = field(default_factory=list)

    def send(self, op: Op) -> Op:
        op.sent = time.monotonic()
        self.ops.append(op)
        return op

    @staticmethod
    def answer(op: Op, outcome: str, key: str | None = None, **more: str | None) -> None:
        op.answered, op.outcome = time.monotonic(), outcome
        if key:
            op.key = key
        for name, value in more.items():
            setattr(op, name, value)

    def lives(self) -> dict[tuple[int, int], list[Op]]:
        found: dict[tuple[int, int], list[Op]] = defaultdict(list)
        for op in self.ops:
            found[op.life_id].append(op)
        return {life: sorted(ops, key=lambda o: o.step) for life, ops in found.items()}

    def counts(self) -> dict[str, int]:
        outcomes = [op.outcome or LOST for op in self.ops]
        return {
            "sent": len(outcomes),
            "ok": outcomes.count(OK),
            "error": outcomes.count(ERROR),
            "no_answer": outcomes.count(LOST),
        }


@dataclass(frozen=True)
class Violation:
    kind: str  # lost, twice, order, error, stranger
    text: str
    op: Op | None = field(default=None, compare=False)  # the mutation it is about


@dataclass
class Check:
    violations: list[Violation] = field(default_factory=list)
    no_answer_applied: int = 0  # mutations without an answer that the store shows applied
    no_answer_not_applied: int = 0  # ... that it shows not applied
    no_answer_unknown: int = 0  # ... whose write a later one overwrote

    def of(self, kind: str) -> list[Violation]:
        return [v for v in self.violations if v.kind == kind]

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, int]:
        kinds = ("lost", "twice", "order", "error", "stranger")
        return {kind: len(self.of(kind)) for kind in kinds} | {
            "no_answer_applied": self.no_answer_applied,
            "no_answer_not_applied": self.no_answer_not_applied,
            "no_answer_overwritten": self.no_answer_unknown,
        }


def check(
    history: History | Iterable[Op],
    documents: Mapping[str, Mapping[str, str]],
    until: float | None = None,
) -> Check:
    """Compare a store's documents (entity -> key -> value) with the history."""
    ops = history.ops if isinstance(history, History) else list(history)
    by_value: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for entity, docs in documents.items():
        for key, value in docs.items():
            by_value[value].append((entity, key))
    result = Check()
    for life in History(list(ops)).lives().values():
        _check_life(life, by_value, documents, until, result)
    return result


def _answered_by(op: Op, until: float | None) -> str | None:
    """The op's outcome as known at `until` (None: not answered yet)."""
    if until is not None and (op.answered is None or op.answered > until):
        return None
    return op.outcome


def _check_life(
    life: list[Op],
    by_value: Mapping[str, list[tuple[str, str]]],
    documents: Mapping[str, Mapping[str, str]],
    until: float | None,
    result: Check,
) -> None:
    entity, add = life[0].entity, life[0]
    writes = {op.value: op for op in life if op.value is not None}
    holders = [(e, k, v) for v in writes for e, k in by_value.get(v, ())]
    found = result.violations.append
    for key in {op.key for op in life if op.key}:
        value = documents.get(entity, {}).get(key)
        if value is not None and value not in writes:
            found(
                Violation("stranger", f"{entity} {key} holds {value!r}, not of {add.show()}", add)
            )
    if len(holders) > 1:
        shown = ", ".join(f"{e} {k} = {v!r}" for e, k, v in holders)
        found(Violation("twice", f"one life in {len(holders)} documents: {shown}", add))
    final = writes[holders[0][2]] if holders else None
    if final is not None and add.key and holders[0][1] != add.key:
        found(Violation("stranger", f"{final.show()} is under key {holders[0][1]}", final))
    # The step the store stands at: the one whose value it holds, else the last delete that may
    # have been applied (-1: nothing of this life).
    if final is not None:
        stands = final.step
    else:
        deletes = [op.step for op in life if op.kind == DELETE and op.outcome in (OK, LOST)]
        stands = deletes[-1] if deletes else -1
    standing = next((op for op in life if op.step == stands), None)
    if standing is not None and standing.outcome == ERROR:
        found(Violation("error", f"{standing.show()}: answered ERROR, and applied", standing))
    last_ok = max((op.step for op in life if _answered_by(op, until) == OK), default=None)
    if last_ok is not None and stands < last_ok:
        newer = next(op for op in life if op.step == last_ok)
        if final is None:
            found(Violation("lost", f"{newer.show()}: not in the store", newer))
        elif newer.kind == DELETE:
            found(
                Violation("twice", f"{newer.show()} undone: the store holds {final.show()}", newer)
            )
        else:
            found(
                Violation(
                    "order",
                    f"{newer.show()} is not the store's value (lost, or an older write applied "
                    f"after it): it holds {final.show()}",
                    newer,
                )
            )
    for op in life:  # what became of the mutations without an answer, where the store says
        if _answered_by(op, until) != LOST:
            continue
        if stands == op.step:
            result.no_answer_applied += 1
        elif stands < op.step:
            result.no_answer_not_applied += 1
        else:
            result.no_answer_unknown += 1  # a later write is there: this one's is overwritten
