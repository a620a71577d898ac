import uuid

import pytest

from cqrs_flow.contracts.ordering import CommandClock, is_ordered, supersedes


def test_ids_are_uuid7_and_increase_within_a_millisecond():
    clock = CommandClock(now_ms=lambda: 1_700_000_000_000)
    ids = [clock.next_id() for _ in range(5000)]  # beyond the 4,096 a millisecond holds
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert all(is_ordered(i) for i in ids)


def test_ids_keep_increasing_when_the_clock_steps_back():
    times = iter([1000, 1000, 900, 900, 1001])
    clock = CommandClock(now_ms=lambda: next(times))
    ids = [clock.next_id() for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_ids_carry_the_time():
    clock = CommandClock(now_ms=lambda: 0x0123456789AB)
    assert clock.next_id().startswith("01234567-89ab-7")


@pytest.mark.parametrize(
    "text, ordered",
    [
        ("01890a5d-ac96-774b-bcce-b302099a8057", True),
        (str(uuid.uuid4()), False),
        ("01890A5D-AC96-774B-BCCE-B302099A8057", False),  # not canonical: would not sort as text
        ("01890a5d-ac96-774b-7cce-b302099a8057", False),  # wrong variant
        ("cmd-1", False),
        ("", False),
    ],
)
def test_is_ordered(text, ordered):
    assert is_ordered(text) is ordered


def test_supersedes():
    clock = CommandClock()
    old, new = clock.next_id(), clock.next_id()
    assert supersedes(old, None)
    assert supersedes(new, old) and not supersedes(old, new)
    assert not supersedes(old, old)  # a redelivery
    assert supersedes("client-chosen", old) and supersedes(old, "client-chosen")
    assert not supersedes("client-chosen", "client-chosen")
