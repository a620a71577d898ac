"""logs: one line per event, text or JSON; the access log's fields."""

from __future__ import annotations

import json
import logging

import pytest

from cqrs_flow.telemetry import logs


def record(message: str = "applied %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("cqrs_flow.writer", logging.INFO, __file__, 1, message, args, None)
    made.created = 1_800_000_000.25
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_text_is_the_level_and_the_message():
    assert logs.TextFormatter().format(record("applied %s", "c1")) == "INFO    applied c1"


def test_json_is_one_object_per_line_with_time_level_node_and_message():
    line = logs.JsonFormatter("writer.2").format(record("applied %s", "c1"))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2027-01-15T08:00:00.250Z",
        "level": "INFO",
        "node": "writer.2",
        "logger": "cqrs_flow.writer",
        "message": "applied c1",
    }


def test_an_error_keeps_its_traceback_in_one_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = record("failed")
        failed.exc_info = sys.exc_info()
    event = json.loads(logs.JsonFormatter().format(failed))
    assert event["exception"].endswith("ValueError: boom")


def test_access_events_carry_their_fields(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="cqrs_flow.access"):
        logs.access(
            "http",
            {"method": "POST", "path": "/graphql"},
            status=200,
            duration_ms=1.5,
            request_id="r1",
        )
    (event,) = caplog.records
    assert logs.TextFormatter().format(event) == (
        "INFO    http POST /graphql status=200 duration_ms=1.5 request_id=r1"
    )
    assert json.loads(logs.JsonFormatter("gateway").format(event)) | {"time": ""} == {
        "time": "",
        "level": "INFO",
        "node": "gateway",
        "logger": "cqrs_flow.access",
        "message": "http POST /graphql",
        "protocol": "http",
        "method": "POST",
        "path": "/graphql",
        "status": 200,
        "duration_ms": 1.5,
        "request_id": "r1",
    }


def test_the_access_log_is_not_formatted_when_off(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="cqrs_flow.access"):
        logs.access("grpc", {"rpc": "a.B/C"}, status="OK")
    assert caplog.records == []


def test_configure_reads_the_format_and_level_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(logs.ENV_LOG_FORMAT, "json")
    monkeypatch.setenv(logs.ENV_LOG_LEVEL, "warning")
    try:
        logs.configure_logging(node="store")
        logging.getLogger("cqrs_flow.store").info("not shown")
        logging.getLogger("cqrs_flow.store").warning("shown")
        lines = capsys.readouterr().out.splitlines()
    finally:
        logging.basicConfig(force=True)
    assert [json.loads(line)["message"] for line in lines] == ["shown"]
    assert json.loads(lines[0])["node"] == "store"
