"""An awaitable's result within a deadline, as cheaply as the Python running allows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")

_timeout = getattr(asyncio, "timeout", None)  # Python 3.11 and later


async def within(call: Awaitable[T], timeout: float) -> T:
    """`call`'s result; TimeoutError after `timeout` seconds (and `call` cancelled). With
    asyncio.timeout where Python has it (3.11): it runs `call` in this task, where wait_for
    makes a task of its own for it, a third again of the cost of a short call."""
    if _timeout is None:
        return await asyncio.wait_for(call, timeout)
    async with _timeout(timeout):
        return await call
