"""Command ids that carry the order in which commands were accepted, and the store's rule.

A gateway stamps every command with a UUIDv7 (RFC 9562): 48 bits of Unix time in milliseconds,
then a 12-bit counter that keeps ids from one gateway strictly increasing within a millisecond
(and across a clock that steps back), then 62 random bits. The canonical text form of such ids
sorts in the same order as the ids, so two ids compare as plain strings.

The store keeps, per entity key, the id of the last command applied to it (kept after a delete
too: a tombstone), and applies a command to a key only if `supersedes(command, last)`:

- the same id again is a redelivery: not applied twice;
- of two ordered (v7) ids, only the newer applies: a command published again after a later one
  on the same entity was applied (a gateway's outbox re-publishing it, say) does not undo it;
- ids without an order (any other string a client chose) always apply, once each.

Across gateways the order is that of their clocks (ties broken by the random bits); within one
gateway it is the order in which it accepted the commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cqrs_flow.contracts.ids import random_int

__all__ = ["CommandClock", "is_ordered", "supersedes"]

_COUNTER_MAX = 0xFFF


class CommandClock:
    """Makes UUIDv7 command ids, strictly increasing for this process."""

    def __init__(
        self,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        random_bits: Callable[[], int] = lambda: random_int(8),
    ) -> None:
        self._now_ms = now_ms
        self._random = random_bits
        self._ms = 0
        self._counter = 0

    def next_id(self) -> str:
        ms = self._now_ms()
        if ms > self._ms:
            self._ms, self._counter = ms, 0
        elif self._counter < _COUNTER_MAX:
            self._counter += 1
        else:  # 4,096 ids in one millisecond, or the clock stepped back: borrow the next one
            self._ms, self._counter = self._ms + 1, 0
        value = (self._ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | self._counter << 64
        value |= 0b10 << 62 | self._random() & 0x3FFF_FFFF_FFFF_FFFF
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_HEX = frozenset("0123456789abcdef")


def is_ordered(command_id: str) -> bool:
    """Whether the id is a UUIDv7 in canonical (lower-case, hyphenated) form."""
    return (
        len(command_id) == 36
        and command_id[14] == "7"
        and command_id[19] in "89ab"
        and command_id[8] == command_id[13] == command_id[18] == command_id[23] == "-"
        and _HEX.issuperset(command_id.replace("-", ""))
    )


def supersedes(command_id: str, last: str | None) -> bool:
    """Whether a command may be applied to a key whose last applied command is `last`."""
    if last is None:
        return True
    if command_id == last:
        return False
    if is_ordered(command_id) and is_ordered(last):
        return command_id > last
    return True
