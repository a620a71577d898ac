"""The store's command rule, property-based: with last_writer_wins, any delivery order of one
history of commands (each key's commands shuffled, repeated, interleaved) ends in the state the
commands give in the order they were accepted; without it, a history applied in order is left
exactly as before the rule existed."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.stores import DuplicateKey, MemoryStore, NotFound, StaleCommand

KEYS = ["a", "b", "c"]

# One command: (op, key, value). Values are whole documents, as the contacts updates are
# (every field without presence is set), so each write assigns the document's state.
commands = st.lists(
    st.tuples(
        st.sampled_from(["insert", "update", "delete"]), st.sampled_from(KEYS), st.integers(0, 9)
    ),
    min_size=1,
    max_size=25,
)


def history(ops: list[tuple[str, str, int]]) -> list[tuple[str, str, int, str]]:
    """The commands with ids in the order they were accepted."""
    clock = CommandClock()
    return [(op, key, value, clock.next_id()) for op, key, value in ops]


async def apply(store: MemoryStore, op: str, key: str, value: int, command: str | None) -> str:
    try:
        if op == "insert":
            await store.insert(key, {"id": key, "v": value}, command)
        elif op == "update":
            await store.update(key, {"id": key, "v": value}, command)
        else:
            await store.delete(key, command)
        return "ok"
    except StaleCommand:
        return "stale"
    except (NotFound, DuplicateKey) as exc:
        return type(exc).__name__


async def state(store: MemoryStore) -> dict[str, int]:
    return {d["id"]: d["v"] for d in await store.list(100)}


def lww_state(commands: list[tuple[str, str, int, str]]) -> dict[str, int]:
    """The model: each key ends as its newest command left it."""
    final: dict[str, int] = {}
    for op, key, value, _ in commands:  # in accepted order: the last one per key wins
        if op == "delete":
            final.pop(key, None)
        else:
            final[key] = value
    return final


@settings(max_examples=300, deadline=None)
@given(ops=commands, order=st.randoms(use_true_random=False), repeats=st.integers(0, 5))
def test_any_delivery_order_converges_to_the_accepted_order(ops, order, repeats):
    accepted = history(ops)
    delivered = accepted + [order.choice(accepted) for _ in range(repeats)]  # some delivered again
    order.shuffle(delivered)

    async def run() -> dict[str, int]:
        store = MemoryStore(f"c-{uuid.uuid4()}", last_writer_wins=True)
        for op, key, value, command in delivered:
            assert await apply(store, op, key, value, command) in ("ok", "stale")
        return await state(store)

    assert asyncio.run(run()) == lww_state(accepted)


@settings(max_examples=300, deadline=None)
@given(ops=commands)
def test_in_order_the_rule_changes_nothing_without_last_writer_wins(ops):
    """Command ids on their own (no last_writer_wins) only turn redeliveries and late commands
    into no-ops: a history applied once, in order, gives the same answers and state as with no
    command ids at all."""
    accepted = history(ops)

    async def run(with_ids: bool) -> tuple[list[str], dict[str, int]]:
        store = MemoryStore(f"c-{uuid.uuid4()}")
        answers = [
            await apply(store, op, key, value, command if with_ids else None)
            for op, key, value, command in accepted
        ]
        return answers, await state(store)

    assert asyncio.run(run(True)) == asyncio.run(run(False))


@settings(max_examples=200, deadline=None)
@given(ops=commands, order=st.randoms(use_true_random=False))
def test_redelivery_after_the_fact_changes_nothing(ops, order):
    """Every command delivered again, in any order, after the history was applied in order: one
    that was applied is stale now, one that was refused is refused again (or stale, if a later
    command on its key was applied), and nothing changes."""
    accepted = history(ops)

    async def run() -> tuple[dict[str, int], dict[str, int]]:
        store = MemoryStore(f"c-{uuid.uuid4()}")
        first = {
            command: await apply(store, op, key, value, command)
            for op, key, value, command in accepted
        }
        before = await state(store)
        again = list(accepted)
        order.shuffle(again)
        for op, key, value, command in again:
            answer = await apply(store, op, key, value, command)
            assert answer == "stale" or (first[command] != "ok" and answer == first[command])
        return before, await state(store)

    before, after = asyncio.run(run())
    assert before == after
