"""How the gateway says no: the one exception a request is refused with, and the one place it
becomes an answer.

Whatever refuses a request (a limit, a busy gateway, a malformed body, an argument that does
not fit, a plugin's Rejected, a reader or broker that is unavailable, an entity not found)
raises Refused with the words the client reads, a stable code (`extensions.code`) and the HTTP
status that fits. `coerced` makes one a GraphQL error of an operation, `error_entry` the error
of an answer of its own, `http_answer` that answer over HTTP. A failure the client cannot act
on is logged in full and answered with `internal(request_id)`. Every error carries the id of
its request (`extensions.request_id`).
"""

from __future__ import annotations

import contextvars
import math
from typing import Any

from aiohttp import web

__all__ = [
    "NOT_FOUND",
    "REQUEST_ID",
    "Refused",
    "coerced",
    "error_entry",
    "http_answer",
    "internal",
    "with_request_id",
]

# The id of the request being answered: tartiflette runs resolvers in tasks that inherit it.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

NOT_FOUND = "NOT_FOUND"  # the code of an entity the reader does not have


class Refused(Exception):
    """A request refused: `message` for the client, `code` for its program, `status` for HTTP,
    `retry_after` (seconds) when trying again later may work, `allow` the methods that do
    (the Allow header of a 405)."""

    code = "BAD_REQUEST"
    status = 400

    def __init__(
        self,
        message: str,
        code: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        allow: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.allow = allow

    @property
    def retry_after_header(self) -> str | None:
        """The Retry-After header's value: whole seconds, at least 1."""
        if self.retry_after is None:
            return None
        return str(max(1, math.ceil(self.retry_after)))


def internal(request_id: str) -> Refused:
    """What a client is told of a failure it cannot act on (logged in full with its id)."""
    return Refused(
        f"internal error (request {request_id}; details are in the gateway log)",
        "INTERNAL",
        status=500,
    )


def coerced(error: dict[str, Any], refused: Refused) -> dict[str, Any]:
    """tartiflette's `error` (its message, path and locations) for a refusal in a resolver."""
    extensions = {**(error.get("extensions") or {}), "code": refused.code}
    return {**error, "message": refused.message, "extensions": extensions}


def error_entry(refused: Refused, request_id: str) -> dict[str, Any]:
    """The GraphQL error of a refused request (one that ran no operation)."""
    return {
        "message": refused.message,
        "extensions": {"code": refused.code, "request_id": request_id},
    }


def http_answer(
    refused: Refused, request_id: str, media_type: str = "application/json"
) -> web.Response:
    """The HTTP answer to a refused request: a GraphQL error with the refusal's status, as
    `media_type`. In application/graphql-response+json a request that ran nothing has no
    `data` at all (GraphQL over HTTP); application/json keeps `"data": null`."""
    answer: dict[str, Any] = {"errors": [error_entry(refused, request_id)]}
    if media_type == "application/json":
        answer = {"data": None, **answer}
    response = web.json_response(answer, status=refused.status, content_type=media_type)
    if refused.retry_after_header is not None:
        response.headers["Retry-After"] = refused.retry_after_header
    if refused.allow is not None:
        response.headers["Allow"] = refused.allow
    return response


def with_request_id(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """`result` with the request id in the extensions of each of its errors (HTTP and WebSocket)."""
    for error in result.get("errors") or ():
        if isinstance(error, dict):
            error["extensions"] = {**(error.get("extensions") or {}), "request_id": request_id}
    return result
