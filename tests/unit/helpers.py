"""Helpers the unit tests share: where the shipped example is, edits of it, lines in it."""

from __future__ import annotations

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
