"""tracing: off unless installed, and then spans carry their context."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cqrs_flow.telemetry import tracing


def test_off_by_default_nothing_is_made_or_carried(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not tracing.configure("writer", "contacts")
    assert not tracing.enabled()
    with tracing.span("anything") as span:
        assert span is None
    metadata = (("x-node", "gateway"),)
    assert tracing.with_traceparent(metadata) is metadata
    assert tracing.traceparent() is None


def test_a_span_continues_the_trace_of_a_traceparent():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        with tracing.span("apply", "CONSUMER", parent=parent):
            carried = tracing.traceparent()
            ids = tracing.current_ids()
            metadata = tracing.with_traceparent((("x-node", "writer"),))
    finally:
        tracing.install(None)
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert carried == f"00-0af7651916cd43dd8448eb211c80319c-{span.context.span_id:016x}-01"
    assert ids == {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": carried[36:52]}
    assert metadata == (("x-node", "writer"), ("traceparent", carried))


def test_the_envelope_is_a_protobuf_field_the_command_does_not_use():
    from google.protobuf import struct_pb2

    message = struct_pb2.Value(string_value="hello")
    wrapped = tracing.wrap(message.SerializeToString(), "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    # A reader that does not take it off still decodes the command.
    assert struct_pb2.Value.FromString(wrapped).string_value == "hello"
    assert tracing.unwrap(wrapped)[0] == message.SerializeToString()
