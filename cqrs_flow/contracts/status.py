"""What writers tell gateways on the status topic besides command reports: that they are online."""

from __future__ import annotations

import json

__all__ = ["online_message", "writer_online"]


def online_message(writer: str, topics: list[str]) -> bytes:
    """What a writer publishes on the status topic each time it has subscribed to its command
    topics: it is (back) online, and what it held before is gone if it was restarted."""
    return json.dumps({"online": writer, "topics": topics}).encode()


def writer_online(payload: bytes) -> tuple[str, list[str]] | None:
    """The writer and command topics of an online message; None if `payload` is none."""
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    writer, topics = message.get("online"), message.get("topics")
    if not isinstance(writer, str) or not isinstance(topics, list):
        return None
    if not all(isinstance(topic, str) for topic in topics):
        return None
    return writer, topics
