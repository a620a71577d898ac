"""How a node writes its log: one line per event on stdout, as text (the default, which `up`
prefixes with the node's name) or as JSON objects, one a line.

    CQRS_FLOW_LOG_LEVEL   DEBUG, INFO (default), WARNING, ERROR
    CQRS_FLOW_LOG_FORMAT  text (default) or json; `--log-format` of `up` and `node` sets it
    CQRS_FLOW_ACCESS_LOG  on, or off (default): the access log below

A text line is `LEVEL   message key=value ...`; a JSON line has `time` (RFC 3339, UTC),
`level`, `node`, `logger`, `message`, the event's fields and, inside a traced operation,
`trace_id` and `span_id`; an error's traceback is in `exception` (in text, on the lines after).

The access log (`cqrs_flow.access`) is one such event per HTTP request and gRPC call: method,
path or RPC, status, duration and request id; never a query string, a body, a header or a
client address, which may carry secrets or personal data.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ACCESS",
    "ENV_ACCESS_LOG",
    "ENV_LOG_FORMAT",
    "ENV_LOG_LEVEL",
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "access",
    "configure_logging",
]

ENV_LOG_LEVEL = "CQRS_FLOW_LOG_LEVEL"
ENV_LOG_FORMAT = "CQRS_FLOW_LOG_FORMAT"
# on: the access log. Off by default: a line per call through `up`'s printer nearly doubled the
# CPU a query costs the whole system (three lines: gateway, reader, store; docs/OPERATIONS.md).
ENV_ACCESS_LOG = "CQRS_FLOW_ACCESS_LOG"
LOG_FORMATS = ("text", "json")
ACCESS = logging.getLogger("cqrs_flow.access")
FIELDS = "fields"  # the `extra` key an event's fields travel under
NAMED = "named"  # the `extra` key of the fields the message says already (left out of text)

# The libraries are chatty at INFO (every connection, every packet); their warnings are kept.
_QUIET = ("amqtt", "transitions", "gmqtt", "tartiflette", "aiohttp.access")


def _trace_ids() -> dict[str, str]:
    """The current span's ids, when tracing is on and a span is current."""
    from cqrs_flow.telemetry import tracing

    return tracing.current_ids() if tracing.enabled() else {}


class TextFormatter(logging.Formatter):
    """`LEVEL   message key=value ...`, the traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        fields: Mapping[str, Any] = getattr(record, FIELDS, None) or {}
        named = getattr(record, NAMED, ())
        text = f"{record.levelname:<7} {record.getMessage()}"
        shown = [f"{k}={_text(v)}" for k, v in fields.items() if k not in named and v is not None]
        if shown:
            text += " " + " ".join(shown)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "node": self.node or None,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event.update(getattr(record, FIELDS, None) or {})
        event.update(_trace_ids())
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


def configure_logging(
    level: str | None = None, log_format: str | None = None, node: str = ""
) -> None:
    """Log records go to stdout, one line each, at `level` (default: $CQRS_FLOW_LOG_LEVEL, else
    INFO), as `log_format` says (default: $CQRS_FLOW_LOG_FORMAT, else text)."""
    level = (level or os.environ.get(ENV_LOG_LEVEL) or "INFO").upper()
    log_format = (log_format or os.environ.get(ENV_LOG_FORMAT) or "text").lower()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(node) if log_format == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    access_log = os.environ.get(ENV_ACCESS_LOG, "off").lower() in ("on", "1", "true", "yes")
    ACCESS.setLevel(logging.NOTSET if access_log else logging.WARNING)


def access_on() -> bool:
    """Whether the access log is on: a caller on a hot path asks first, and builds nothing
    for `access` when it is off."""
    return ACCESS.isEnabledFor(logging.INFO)


def access(protocol: str, named: Mapping[str, Any], **fields: Any) -> None:
    """One access-log event: `protocol` and the values of `named` make its message ("http POST
    /graphql", "grpc contacts.ContactReader/GetContact"); JSON lines carry them as fields too,
    with `fields` (status, duration_ms, request_id, ...). Nothing is formatted when the access
    log is off."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info(
            " ".join((protocol, *map(str, named.values()))),
            extra={FIELDS: {"protocol": protocol, **named, **fields}, NAMED: ("protocol", *named)},
        )


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def _rfc3339(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"
