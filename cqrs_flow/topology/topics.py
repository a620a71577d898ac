"""MQTT topic names and filters: syntax and matching (MQTT 3.1.1, section 4.7)."""

from __future__ import annotations

__all__ = ["filter_problem", "matches"]


def filter_problem(topic_filter: str) -> str | None:
    """Why `topic_filter` is not a valid subscription filter, or None when it is."""
    if not topic_filter:
        return "a topic filter must not be empty"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"'#' must be a whole level and the last one: {topic_filter!r}"
        if "+" in level and level != "+":
            return f"'+' must be a whole level: {topic_filter!r}"
    if topic_filter.startswith("$"):
        return f"topics starting with '$' are reserved by the broker: {topic_filter!r}"
    return None


def matches(topic_filter: str, topic: str) -> bool:
    """Whether a message published on `topic` reaches a subscription to `topic_filter`."""
    pattern, levels = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(pattern):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(pattern) == len(levels)
