"""Random parts of ids: UUIDv4 text for new entities, and the random bits of command ids
(ordering.py), from the operating system's random source (os.urandom, as uuid.uuid4 uses).

Each os.urandom call is a system call; a gateway makes two a mutation (the entity's id and the
command id's random bits), and under load they cost about as much as the rest of making the
ids. The bytes are read POOL bytes at a time and handed out in order, each byte once; the pool
is dropped in a forked child, which must not hand out its parent's bytes again.
"""

from __future__ import annotations

import os

__all__ = ["POOL", "random_int", "uuid4"]

POOL = 4096  # bytes read from the OS at a time: 256 UUIDs

_pool = b""
_at = 0


def _forget() -> None:
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_forget)


def random_int(size: int) -> int:
    """A random non-negative integer of `size` bytes (at most POOL)."""
    global _pool, _at
    if _at + size > len(_pool):
        _pool, _at = os.urandom(POOL), 0
    start = _at
    _at = start + size
    return int.from_bytes(_pool[start : start + size], "big")


_VERSION_4 = ~(0xF000 << 64) & ~(0xC000 << 48)  # clears the version and variant bits
_MARKS = 0x4000 << 64 | 0x8000 << 48  # version 4, variant RFC 9562


def uuid4() -> str:
    """A random UUID (version 4) in its canonical text form, as str(uuid.uuid4()) gives it."""
    text = f"{random_int(16) & _VERSION_4 | _MARKS:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
