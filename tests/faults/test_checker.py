"""The history checker, on histories built by hand to be right, and wrong in each way it names."""

from __future__ import annotations

import pytest
from checker import ERROR, LOST, OK, History, Op, check

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
