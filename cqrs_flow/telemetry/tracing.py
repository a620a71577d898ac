"""Traces (OpenTelemetry), off unless configured: a mutation's trace runs from the gateway's HTTP
request through its GraphQL operation and the MQTT command to the writer and the store's write
call; a query's through the reader's gRPC calls to the store.

Tracing is on in a node process when an OTLP endpoint is configured the standard way
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, and the other
`OTEL_EXPORTER_OTLP_*` settings); spans are then exported over OTLP/gRPC in batches. Off, no
span is made and no context is carried: each hook costs one check of a module flag.

Context travels as a W3C `traceparent`: in gRPC metadata, in the user properties of an MQTT 5
message, and on MQTT 3.1.1 (which has no properties) in the command's own protobuf bytes, as a
field the command's message does not use (number ENVELOPE_FIELD, first in the payload), which
the writer takes off before decoding. A writer of an older version, which does not take it off,
decodes the command all the same: protobuf keeps unknown fields aside.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "ENVELOPE_FIELD",
    "TRACEPARENT",
    "configure",
    "current_ids",
    "enabled",
    "extract",
    "install",
    "shutdown",
    "span",
    "traceparent",
    "unwrap",
    "with_traceparent",
    "wrap",
]

TRACEPARENT = "traceparent"
# The largest protobuf field number: no command message of a topology uses it.
ENVELOPE_FIELD = 536_870_911
_ENVELOPE_TAG = bytes([0xFA, 0xFF, 0xFF, 0xFF, 0x0F])  # varint of ENVELOPE_FIELD << 3 | 2

_tracer: Any = None  # an OpenTelemetry Tracer while tracing is on
_propagator: Any = None
_provider: Any = None


def enabled() -> bool:
    return _tracer is not None


def configure(node: str, system: str) -> bool:
    """Turn tracing on for this node process when an OTLP endpoint is configured; whether it is
    on."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": node, "service.namespace": system})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def install(provider: Any) -> None:
    """Trace with `provider` (an SDK TracerProvider; tests give one with an in-memory
    exporter); None turns tracing off."""
    global _tracer, _propagator, _provider
    _provider = provider
    if provider is None:
        _tracer = _propagator = None
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _tracer = provider.get_tracer("cqrs_flow")
    _propagator = TraceContextTextMapPropagator()


def shutdown() -> None:
    """Export the spans still waiting, and stop tracing."""
    provider = _provider
    install(None)
    if provider is not None:
        provider.shutdown()


def extract(traceparent: str | None) -> Any:
    """The context a `traceparent` carries (None: none, a new trace starts)."""
    if _propagator is None or not traceparent:
        return None
    return _propagator.extract({TRACEPARENT: traceparent})


def traceparent() -> str | None:
    """The current span's context as a `traceparent`, None when tracing is off or no span is."""
    if _propagator is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


_OFF = contextlib.nullcontext()  # what `span` is while tracing is off: nothing to make


def span(
    name: str,
    kind: str = "INTERNAL",
    parent: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """A span named `name` around the block (kind: SERVER, CLIENT, PRODUCER, CONSUMER,
    INTERNAL), a child of `parent` (a traceparent) if given, else of the current span; None
    when tracing is off. An exception escaping the block marks the span as failed."""
    if _tracer is None:
        return _OFF
    return _span(name, kind, parent, attributes)


@contextlib.contextmanager
def _span(
    name: str, kind: str, parent: str | None, attributes: dict[str, Any] | None
) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(
        name, context=extract(parent), kind=SpanKind[kind], attributes=attributes
    ) as current:
        yield current


def current_ids() -> dict[str, str]:
    """trace_id and span_id of the current span (for log lines), {} when none."""
    if _tracer is None:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def with_traceparent(metadata: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
    """gRPC call metadata with the current span's traceparent added (as it is when off)."""
    if _tracer is None:
        return metadata
    value = traceparent()
    return metadata if value is None else (*metadata, (TRACEPARENT, value))


def wrap(payload: bytes, traceparent_value: str | None) -> bytes:
    """A command's bytes with the traceparent in front, as a protobuf field of its own (MQTT
    3.1.1); the bytes as they are without one."""
    if not traceparent_value:
        return payload
    text = traceparent_value.encode("ascii")[:127]  # one length byte; a traceparent is 55
    return _ENVELOPE_TAG + bytes([len(text)]) + text + payload


def unwrap(payload: bytes) -> tuple[bytes, str | None]:
    """The command's bytes and the traceparent `wrap` put in front of them, if it did."""
    if not payload.startswith(_ENVELOPE_TAG) or len(payload) < 6:
        return payload, None
    size = payload[5]
    if size > 127 or len(payload) < 6 + size:
        return payload, None
    return payload[6 + size :], payload[6 : 6 + size].decode("ascii", "replace")
