"""The history checker, on histories built by hand to be right, and wrong in each way it names."""

from __future__ import annotations

import pytest
from checker import ERROR, LOST, OK, History, Logged, Op, check, check_loans, check_log, replay

E = "Contact"


def life(lane: int, *steps: tuple[str, str | None, str], key: str = "k", t0: float = 0.0):
    """Ops of one life: (kind, value, outcome) each, answered one second apart."""
    ops = []
    for step, (kind, value, outcome) in enumerate(steps):
        op = Op(lane, 0, step, E, kind, value, key=key if outcome == OK or step else None)
        op.sent, op.answered, op.outcome = t0 + step, t0 + step + 0.5, outcome
        ops.append(op)
    return ops


ADD_UPDATE_DELETE = life(
    1, ("add", "v0", OK), ("update", "v1", OK), ("update", "v2", OK), ("delete", None, OK)
)


def kinds(result) -> list[str]:
    return [v.kind for v in result.violations]


def test_a_right_history_passes():
    ops = [*ADD_UPDATE_DELETE, *life(2, ("add", "w0", OK), ("update", "w1", OK), key="j")]
    result = check(ops, {E: {"j": "w1"}})
    assert result.ok and result.summary()["lost"] == 0


def test_an_accepted_add_missing_is_lost():
    assert kinds(check(life(1, ("add", "v0", OK)), {E: {}})) == ["lost"]


def test_an_accepted_update_not_there_is_out_of_order():
    ops = life(1, ("add", "v0", OK), ("update", "v1", OK), ("update", "v2", OK))
    result = check(ops, {E: {"k": "v1"}})
    assert kinds(result) == ["order"] and "v2" in result.violations[0].text


def test_a_deleted_document_back_was_applied_twice():
    assert kinds(check(ADD_UPDATE_DELETE, {E: {"k": "v2"}})) == ["twice"]


def test_one_life_in_two_documents_was_added_twice():
    ops = life(1, ("add", "v0", OK))
    assert "twice" in kinds(check(ops, {E: {"k": "v0", "other": "v0"}}))


def test_a_mutation_answered_error_must_not_be_applied():
    ops = life(1, ("add", "v0", OK), ("update", "v1", ERROR))
    assert kinds(check(ops, {E: {"k": "v1"}})) == ["error"]
    assert check(ops, {E: {"k": "v0"}}).ok


def test_a_refused_add_must_not_be_there():
    ops = life(1, ("add", "v0", ERROR))
    assert kinds(check(ops, {E: {"x": "v0"}})) == ["error"]
    assert check(ops, {E: {}}).ok


def test_a_value_no_mutation_wrote_is_a_stranger():
    assert kinds(check(life(1, ("add", "v0", OK)), {E: {"k": "garbage"}})) == ["stranger", "lost"]


def test_a_mutation_without_an_answer_may_be_applied_or_not_and_is_counted():
    ops = life(1, ("add", "v0", OK), ("update", "v1", LOST))
    applied, not_applied = check(ops, {E: {"k": "v1"}}), check(ops, {E: {"k": "v0"}})
    assert applied.ok and applied.no_answer_applied == 1
    assert not_applied.ok and not_applied.no_answer_not_applied == 1
    ops = life(1, ("add", "v0", OK), ("update", "v1", LOST), ("update", "v2", OK))
    overwritten = check(ops, {E: {"k": "v2"}})
    assert overwritten.ok and overwritten.no_answer_unknown == 1


def test_a_lost_add_may_be_there_or_not_but_only_once():
    ops = life(1, ("add", "v0", LOST))
    assert check(ops, {E: {}}).ok and check(ops, {E: {"x": "v0"}}).ok
    assert kinds(check(ops, {E: {"x": "v0", "y": "v0"}})) == ["twice"]


def test_until_only_asks_for_what_was_answered_by_then():
    ops = life(1, ("add", "v0", OK), ("update", "v1", OK))  # answered at 0.5 and 1.5
    assert check(ops, {E: {"k": "v0"}}, until=1.0).ok
    assert kinds(check(ops, {E: {"k": "v0"}}, until=2.0)) == ["order"]
    assert kinds(check(ops, {E: {}}, until=1.0)) == ["lost"]


def test_a_history_records_what_it_is_told():
    history = History()
    op = history.send(Op(0, 0, 0, E, "add", "v0"))
    History.answer(op, OK, key="k", command_id="c1")
    assert (op.outcome, op.key, op.command_id) == (OK, "k", "c1") and op.answered >= op.sent
    assert history.counts() == {"sent": 1, "ok": 1, "error": 0, "no_answer": 0}


@pytest.mark.parametrize("outcome", [OK, LOST])
def test_a_delete_that_took_effect_leaves_nothing(outcome):
    ops = life(1, ("add", "v0", OK), ("delete", None, outcome))
    result = check(ops, {E: {}})
    assert result.ok and result.no_answer_applied == (outcome == LOST)


def test_the_same_seed_draws_the_same_schedule_and_a_short_one_has_every_fault():
    from nemesis import FAULTS, schedule

    faults = {kind: tuple(nodes) for kind, nodes in FAULTS.items()}
    kinds, pairs = len(FAULTS), {(k, n) for k, ns in FAULTS.items() for n in ns}
    first = schedule(7, faults, kinds, (1.0, 2.0))
    assert first == schedule(7, faults, kinds, (1.0, 2.0)) != schedule(8, faults, kinds, (1.0, 2.0))
    assert sorted(f.kind for f in first) == sorted(FAULTS)
    every = schedule(7, faults, len(pairs), (1.0, 2.0))
    assert {(f.kind, f.node) for f in every} == pairs


# -- the change log -------------------------------------------------------------------------------

FIELDS = {E: "name"}


def logged(*changes: tuple[str, str | None], key: str = "k", first: int = 1, ids=None):
    """Changes of one document: (op, value) each, the value written into its `name`."""
    out = []
    for i, (op, value) in enumerate(changes):
        document = None if op == "delete" else {"id": key, "name": value}
        command = (ids or {}).get(i, "")
        out.append(Logged(first + i, E, key, op, command, document))
    return out


def documents_of(log) -> dict:
    return {E: {k: dict(d) for k, d in replay(log).get(E, {}).items()}}


WRITTEN = logged(("insert", "v0"), ("update", "v1"), ("update", "v2"), ("delete", None))


def log_kinds(result) -> list[str]:
    return [v.kind for v in result.violations]


def test_a_log_with_each_accepted_write_once_in_order_passes():
    result = check_log(ADD_UPDATE_DELETE, WRITTEN, {E: {}}, FIELDS)
    assert result.violations == [] and result.changes == 4


def test_an_accepted_write_missing_from_the_log_is_missing():
    ops = life(1, ("add", "v0", OK), ("update", "v1", OK), ("update", "v2", OK))
    log = logged(("insert", "v0"), ("update", "v1"))  # v2, the last, never logged
    result = check_log(ops, log, documents_of(log), FIELDS)
    assert log_kinds(result) == ["log_missing"] and "'v2'" in result.violations[0].text
    log = logged(("update", "v1"), ("update", "v2"), first=2)  # nor the add, before them
    assert log_kinds(check_log(ops, log, documents_of(log), FIELDS)) == ["log_missing"]


def test_an_accepted_write_a_later_one_superseded_is_counted_not_missing():
    """The store skips a write delivered after a newer one of its document was applied (their
    command ids say which is newer): not applied, yet not lost, its effect overwritten."""
    log = [c for c in WRITTEN if c.position != 2]  # v1 came after v2 and was skipped
    result = check_log(ADD_UPDATE_DELETE, log, documents_of(log), FIELDS)
    assert result.violations == [] and result.superseded == 1


def test_an_update_applied_twice_is_seen_though_a_later_write_overwrote_it():
    # v1 applied again after v2 (a redelivery), then v2's value is gone from nowhere but the log
    ops = life(1, ("add", "v0", OK), ("update", "v1", OK), ("update", "v2", OK))
    log = logged(("insert", "v0"), ("update", "v1"), ("update", "v2"), ("update", "v1"))
    result = check_log(ops, log, documents_of(log), FIELDS)
    assert sorted(log_kinds(result)) == ["log_order", "log_twice"]
    # and applied twice in a row: the document ends right, the log alone shows it
    log = logged(("insert", "v0"), ("update", "v1"), ("update", "v1"), ("update", "v2"))
    assert check(ops, {E: {"k": "v2"}}).ok
    assert log_kinds(check_log(ops, log, documents_of(log), FIELDS)) == ["log_twice"]


def test_a_delete_applied_twice_is_seen_by_its_command_id():
    ops = life(1, ("add", "v0", OK), ("delete", None, OK))
    ops[1].command_id = "c-del"
    log = logged(("insert", "v0"), ("delete", None), ("delete", None), ids={1: "c-del", 2: "c-del"})
    assert log_kinds(check_log(ops, log, {E: {}}, FIELDS)) == ["log_twice"]


def test_a_refused_write_in_the_log_is_refused():
    ops = life(1, ("add", "v0", OK), ("update", "v1", ERROR))
    log = logged(("insert", "v0"), ("update", "v1"))
    assert log_kinds(check_log(ops, log, documents_of(log), FIELDS)) == ["log_refused"]


def test_writes_logged_out_of_the_order_they_were_accepted_are_out_of_order():
    ops = life(1, ("add", "v0", OK), ("update", "v1", OK), ("update", "v2", OK))
    log = logged(("insert", "v0"), ("update", "v2"), ("update", "v1"))
    result = check_log(ops, log, documents_of(log), FIELDS)
    assert log_kinds(result) == ["log_order"]
    # the store holds v1 too (the log replays to it): the document check calls it order as well
    assert kinds(check(ops, {E: {"k": "v1"}})) == ["order"]


def test_a_change_no_mutation_made_is_a_stranger():
    ops = life(1, ("add", "v0", OK))
    log = logged(("insert", "v0"), ("update", "nobody's"))
    assert log_kinds(check_log(ops, log, documents_of(log), FIELDS)) == ["log_stranger"]
    # another document's write under this key
    other = life(2, ("add", "w0", OK), key="j")
    log = [*logged(("insert", "v0")), *logged(("update", "w0"), first=2)]
    found = log_kinds(check_log([*ops, *other], log, documents_of(log), FIELDS))
    assert found == ["log_stranger", "log_missing"]


def test_the_log_must_replay_to_the_store():
    ops = life(1, ("add", "v0", OK), ("update", "v1", OK))
    log = logged(("insert", "v0"), ("update", "v1"))
    assert check_log(ops, log, {E: {"k": {"id": "k", "name": "v1"}}}, FIELDS).violations == []
    stale = check_log(ops, log, {E: {"k": {"id": "k", "name": "v0"}}}, FIELDS)
    assert log_kinds(stale) == ["replay"]
    extra = {E: {"k": {"id": "k", "name": "v1"}, "x": {"id": "x", "name": "?"}}}
    assert log_kinds(check_log(ops, log, extra, FIELDS)) == ["replay"]
    assert log_kinds(check_log(ops, log, {E: {}}, FIELDS)) == ["replay"]


def test_the_log_says_which_mutations_without_an_answer_were_applied():
    ops = life(
        1, ("add", "v0", OK), ("update", "v1", LOST), ("update", "v2", LOST), ("update", "v3", OK)
    )
    log = logged(("insert", "v0"), ("update", "v1"), ("update", "v3"))
    result = check_log(ops, log, documents_of(log), FIELDS)
    assert result.violations == []
    assert (result.no_answer_logged, result.no_answer_not_logged) == (1, 1)
    log = logged(("insert", "v0"), ("update", "v1"), ("update", "v1"), ("update", "v3"))
    assert log_kinds(check_log(ops, log, documents_of(log), FIELDS)) == ["log_twice"]


def test_changes_of_entities_the_workload_does_not_write_are_only_replayed():
    ops = life(1, ("add", "v0", OK))
    log = [*logged(("insert", "v0")), Logged(2, "Other", "o", "insert", "", {"x": 1})]
    store = {E: {"k": {"id": "k", "name": "v0"}}, "Other": {"o": {"x": 1}}}
    result = check_log(ops, log, store, FIELDS)
    assert result.violations == [] and result.changes == 1
    assert log_kinds(check_log(ops, log, {**store, "Other": {}}, FIELDS)) == ["replay"]


# -- the loans projection -------------------------------------------------------------------------


def loan(key: str, member: str, book: str = "b", due: str = "2030-01-01", returned=False):
    return {"id": key, "member": member, "book_id": book, "due": due, "returned": returned}


def member(name: str, *loans: dict) -> dict:
    return {
        "member": name,
        "loans": [x["id"] for x in loans],
        "books": [x["book_id"] for x in loans],
        "dues": [x["due"] for x in loans],
        "on_loan": len(loans),
        "next_due": min((x["due"] for x in loans), default=""),
    }


LOANS = {
    "l1": loan("l1", "ann", due="2030-02-01"),
    "l2": loan("l2", "ann", book="c", due="2030-01-01"),
    "l3": loan("l3", "bob"),
    "l4": loan("l4", "cy", returned=True),
}


def test_a_read_model_that_matches_the_loans_passes():
    model = {"ann": member("ann", LOANS["l1"], LOANS["l2"]), "bob": member("bob", LOANS["l3"])}
    assert check_loans(LOANS, model) == []


def test_a_loan_the_projection_skipped_or_kept_is_found():
    skipped = {"ann": member("ann", LOANS["l1"]), "bob": member("bob", LOANS["l3"])}
    assert [v.kind for v in check_loans(LOANS, skipped)] == ["projection"]
    missing_member = {"ann": member("ann", LOANS["l1"], LOANS["l2"])}
    assert "bob" in check_loans(LOANS, missing_member)[0].text
    returned_kept = {**missing_member, "bob": member("bob", LOANS["l3"])}
    returned_kept["cy"] = member("cy", LOANS["l4"])  # its return was skipped
    assert "cy" in check_loans(LOANS, returned_kept)[0].text


def test_a_loan_the_projection_applied_twice_is_found():
    twice = {
        "ann": member("ann", LOANS["l1"], LOANS["l2"], LOANS["l1"]),
        "bob": member("bob", LOANS["l3"]),
    }
    found = check_loans(LOANS, twice)
    assert found and "twice" in found[0].text
    wrong_count = {"ann": {**member("ann", LOANS["l1"], LOANS["l2"]), "on_loan": 3}}
    wrong_count["bob"] = member("bob", LOANS["l3"])
    assert "on_loan 3" in check_loans(LOANS, wrong_count)[0].text
