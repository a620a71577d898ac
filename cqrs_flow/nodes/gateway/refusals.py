"""How the gateway tells a client no: the request id every answer carries, and the failures a
client is told about in plain words (no internals)."""

from __future__ import annotations

import contextvars
from typing import Any

__all__ = ["REQUEST_ID", "RequestFailed", "internal_error", "with_request_id"]

# The id of the request being answered: tartiflette runs resolvers in tasks that inherit it.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestFailed(Exception):
    """A failure the client is told about in plain words (no internals)."""


def internal_error(request_id: str) -> str:
    """What a client is told of a failure it cannot act on (logged in full with its id)."""
    return f"internal error (request {request_id}; details are in the gateway log)"


def with_request_id(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """`result` with the request id in the extensions of each of its errors (HTTP and WebSocket)."""
    for error in result.get("errors") or ():
        if isinstance(error, dict):
            error["extensions"] = {**(error.get("extensions") or {}), "request_id": request_id}
    return result
