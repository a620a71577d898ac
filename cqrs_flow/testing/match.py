"""Comparing what a case expects with what the system holds, and showing the difference."""

from __future__ import annotations

import difflib
import json
from typing import Any

__all__ = ["contains", "diff", "substitute"]


def contains(expected: Any, actual: Any) -> bool:
    """Whether `actual` has everything `expected` says: the keys of a mapping (others may be
    there too), for a list each expected item matched by an item of its own (in any order),
    other values equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return False
        left = list(actual)
        for item in expected:
            found = next((i for i, candidate in enumerate(left) if contains(item, candidate)), None)
            if found is None:
                return False
            del left[found]
        return True
    if isinstance(expected, float) or isinstance(actual, float):
        return isinstance(actual, (int, float)) and float(expected) == float(actual)
    return bool(expected == actual)


def diff(expected: Any, actual: Any) -> str:
    """A unified diff of the two, as indented JSON with sorted keys."""

    def text(value: Any) -> list[str]:
        return json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()

    lines = difflib.unified_diff(text(expected), text(actual), "expected", "actual", lineterm="")
    return "\n".join(lines)


def substitute(value: Any, captured: dict[str, Any]) -> Any:
    """`value` with each "$name" (a whole string: the captured value itself, of any type) or
    "${name}" (inside a string: its text) replaced by what was captured under that name."""
    if isinstance(value, dict):
        return {key: substitute(item, captured) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, captured) for item in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    if value.startswith("$") and value[1:] in captured:
        return captured[value[1:]]
    for name, found in captured.items():
        value = value.replace("${" + name + "}", str(found))
    return value
