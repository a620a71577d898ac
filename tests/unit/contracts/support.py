"""Small helpers of the contract tests."""

from __future__ import annotations

from pathlib import Path

from cqrs_flow.errors import Problem

# The shipped proto's DeleteContactRequest, as tests edit it.
DELETE_REQUEST = "message DeleteContactRequest { string id = 1; string command_id = 15; }"


def at(problems: list[Problem], path: str) -> list[str]:
    """The messages of the problems at one key path."""
    return [p.message for p in problems if p.path == path]


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")
