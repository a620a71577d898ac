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

__all__ = [
    "ERROR",
    "LOST",
    "OK",
    "Check",
    "History",
    "LogCheck",
    "Logged",
    "Op",
    "Violation",
    "check",
    "check_loans",
    "check_log",
    "replay",
]

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


# -- the change log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """One change of a store's change log, decoded: the document after it (None: a delete)."""

    position: int
    entity: str
    key: str
    op: str  # insert, update, delete
    command_id: str
    document: dict[str, object] | None


LOG_KINDS = ("log_missing", "log_twice", "log_order", "log_refused", "log_stranger", "replay")


@dataclass
class LogCheck:
    """What the change log says of the history: each violation, and what became of the
    mutations without an answer (the log says it of each one, overwritten or not)."""

    violations: list[Violation] = field(default_factory=list)
    changes: int = 0  # changes of the workload's entities in the log
    superseded: int = 0  # accepted writes no change made, a later one of their document did
    no_answer_logged: int = 0  # mutations without an answer that the log shows applied
    no_answer_not_logged: int = 0  # ... that it shows not applied

    def of(self, kind: str) -> list[Violation]:
        return [v for v in self.violations if v.kind == kind]

    def summary(self) -> dict[str, int]:
        return {kind: len(self.of(kind)) for kind in LOG_KINDS} | {
            "changes": self.changes,
            "superseded": self.superseded,
            "no_answer_logged": self.no_answer_logged,
            "no_answer_not_logged": self.no_answer_not_logged,
        }


def check_log(
    history: History | Iterable[Op],
    log: Iterable[Logged],
    store: Mapping[str, Mapping[str, Mapping[str, object]]],
    fields: Mapping[str, str],
) -> LogCheck:
    """Compare a store's change log with the history and with the store's documents.

    `fields` names, of each entity the workload writes, the field holding a write's value: a
    change of such an entity names its mutation by that value (a delete, which has none, by its
    command id, else as its document's one delete). Of those changes, the check finds:

    - log_missing:  a mutation answered OK that no change made: an add, or an update or a
                    delete no later change of its document followed (the store skips a write
                    that comes after a newer one of the same document was applied, by their
                    command ids, so as not to undo it: such a write is counted as superseded);
    - log_twice:    a mutation two changes made (applied twice: an update again after it, too);
    - log_refused:  a change made by a mutation answered ERROR;
    - log_order:    the changes of one document not in the order their mutations were sent
                    (one mutation at a time a lane: the order of acceptance);
    - log_stranger: a change no mutation made, or one of another document's;
    - replay:       the documents the log gives, each change applied in turn, differ from the
                    store's (`store`: entity -> key -> document, of the entities it holds).
    """
    ops = history.ops if isinstance(history, History) else list(history)
    changes = sorted(log, key=lambda c: c.position)
    result = LogCheck()
    found = result.violations.append
    by_value = {op.value: op for op in ops if op.value is not None}
    by_command = {op.command_id: op for op in ops if op.command_id}
    deletes: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind == DELETE and op.key:
            deletes[(op.entity, op.key)].append(op)
    made: dict[int, list[Logged]] = defaultdict(list)  # id(op) -> the changes it made
    per_key: dict[tuple[str, str], list[tuple[Logged, Op]]] = defaultdict(list)
    positions = [c.position for c in changes]
    if len(set(positions)) != len(positions):
        found(Violation("log_order", "the log gives one position to two changes"))
    for change in changes:
        if change.entity not in fields:
            continue
        result.changes += 1
        op = _maker(change, fields[change.entity], by_value, by_command, deletes)
        if op is None:
            found(Violation("log_stranger", f"{_shown(change)}: made by no mutation sent"))
            continue
        if op.entity != change.entity or (op.key and op.key != change.key):
            found(Violation("log_stranger", f"{_shown(change)} has the write of {op.show()}", op))
            continue
        made[id(op)].append(change)
        per_key[(change.entity, change.key)].append((change, op))
    logged_steps: dict[tuple[int, int], list[int]] = defaultdict(list)
    for op in ops:
        if made.get(id(op)):
            logged_steps[op.life_id].append(op.step)
    for op in ops:
        times = len(made.get(id(op), ()))
        if op.outcome == OK and times == 0:
            later = any(step > op.step for step in logged_steps.get(op.life_id, ()))
            if op.kind != ADD and later:  # an add comes first: nothing supersedes it
                result.superseded += 1
            else:
                found(Violation("log_missing", f"{op.show()}: no change in the log", op))
        elif times > 1:
            shown = ", ".join(str(c.position) for c in made[id(op)])
            found(Violation("log_twice", f"{op.show()}: made {times} changes ({shown})", op))
        if op.outcome == ERROR and times:
            found(Violation("log_refused", f"{op.show()}: answered ERROR, and in the log", op))
        if op.outcome in (LOST, None):
            if times:
                result.no_answer_logged += 1
            else:
                result.no_answer_not_logged += 1
    for (entity, key), made_here in per_key.items():
        steps = [(op.life_id, op.step) for _, op in made_here]
        if len({life for life, _ in steps}) > 1:
            found(Violation("log_stranger", f"{entity} {key}: changes of several lives"))
        elif steps != sorted(steps):
            shown = ", ".join(f"{c.position}: step {op.step}" for c, op in made_here)
            found(
                Violation(
                    "log_order", f"{entity} {key}: changes out of order ({shown})", made_here[0][1]
                )
            )
    for text in _replay_differences(changes, store):
        found(Violation("replay", text))
    return result


def _maker(
    change: Logged,
    field_name: str,
    by_value: Mapping[str, Op],
    by_command: Mapping[str, Op],
    deletes: Mapping[tuple[str, str], list[Op]],
) -> Op | None:
    """The mutation that made `change`, or None."""
    if change.op == "delete":
        if change.command_id and change.command_id in by_command:
            return by_command[change.command_id]
        mine = deletes.get((change.entity, change.key), [])
        return mine[0] if len(mine) == 1 else None
    value = (change.document or {}).get(field_name)
    return by_value.get(value) if isinstance(value, str) else None


def _shown(change: Logged) -> str:
    return f"change {change.position} ({change.op} {change.entity} {change.key})"


def replay(log: Iterable[Logged]) -> dict[str, dict[str, Mapping[str, object]]]:
    """The documents a store holds after the log's changes, each applied in order."""
    documents: dict[str, dict[str, Mapping[str, object]]] = defaultdict(dict)
    for change in sorted(log, key=lambda c: c.position):
        if change.document is None:
            documents[change.entity].pop(change.key, None)
        else:
            documents[change.entity][change.key] = change.document
    return documents


def _replay_differences(
    log: Iterable[Logged], store: Mapping[str, Mapping[str, Mapping[str, object]]]
) -> list[str]:
    replayed = replay(log)
    differences = []
    for entity, held in store.items():
        given = replayed.get(entity, {})
        for key in sorted(set(held) | set(given)):
            if key not in given:
                differences.append(f"{entity} {key} is in the store, not in the log's replay")
            elif key not in held:
                differences.append(f"{entity} {key} is in the log's replay, not in the store")
            elif dict(given[key]) != dict(held[key]):
                differences.append(
                    f"{entity} {key}: the store holds {dict(held[key])}, the log's replay "
                    f"{dict(given[key])}"
                )
    return differences


# -- a projection's read model --------------------------------------------------------------------


def check_loans(
    loans: Mapping[str, Mapping[str, object]], member_loans: Mapping[str, Mapping[str, object]]
) -> list[Violation]:
    """The library's `loans` projection: MemberLoans (member -> document) must be what the
    store's loans (key -> Loan document) imply: a document per member with a loan not returned,
    its loans once each with their book and due date, `on_loan` their count and `next_due` the
    earliest due date. A change the projection skipped leaves a loan out (or one that is gone
    in); one applied twice lists a loan twice, or undoes a later one."""
    expected: dict[str, list[Mapping[str, object]]] = defaultdict(list)
    for loan in loans.values():
        if loan.get("member") and not loan.get("returned"):
            expected[str(loan["member"])].append(loan)
    found: list[Violation] = []
    for member in sorted(set(expected) | set(member_loans)):
        held, mine = member_loans.get(member), expected.get(member, [])
        if held is None:
            ids = [loan.get("id") for loan in mine]
            found.append(Violation("projection", f"member {member}: no MemberLoans, has {ids}"))
            continue
        ids = list(held.get("loans") or [])  # type: ignore[call-overload]
        if len(ids) != len(set(ids)):
            found.append(Violation("projection", f"member {member}: a loan listed twice: {ids}"))
        if sorted(ids) != sorted(str(loan.get("id")) for loan in mine):
            want = sorted(str(loan.get("id")) for loan in mine)
            found.append(Violation("projection", f"member {member}: loans {ids}, store: {want}"))
            continue
        by_id = {str(loan.get("id")): loan for loan in mine}
        books = list(held.get("books") or [])  # type: ignore[call-overload]
        dues = list(held.get("dues") or [])  # type: ignore[call-overload]
        want_books = [by_id[i].get("book_id", "") for i in ids]
        want_dues = [by_id[i].get("due", "") for i in ids]
        if books != want_books or dues != want_dues:
            found.append(
                Violation(
                    "projection",
                    f"member {member}: books {books} and dues {dues}, store: {want_books}, "
                    f"{want_dues}",
                )
            )
        if held.get("on_loan") != len(ids) or held.get("next_due") != min(want_dues, default=""):
            found.append(
                Violation(
                    "projection",
                    f"member {member}: on_loan {held.get('on_loan')}, next_due "
                    f"{held.get('next_due')!r} for {len(ids)} loans due {want_dues}",
                )
            )
    return found
