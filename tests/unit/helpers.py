"""Helpers the unit tests share: where the shipped example is, edits of it, lines in it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "topology.yaml"

Edit = tuple[str, str]


def apply_edits(text: str, edits: tuple[Edit, ...] | list[Edit]) -> str:
    """Replace the first occurrence of each `old` with `new`; an `old` missing from the text is a
    bug of the test."""
    for old, new in edits:
        assert old in text, f"edit target not found: {old!r}"
        text = text.replace(old, new, 1)
    return text


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} is not in the text {occurrence} time(s)"
    return hits[occurrence - 1]


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the loop run until `condition()` is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout:g}s"
        await asyncio.sleep(0.01)
