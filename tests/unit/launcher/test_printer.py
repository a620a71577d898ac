"""printer: name-prefixed text lines, or JSON lines with `--log-format json`."""

from __future__ import annotations

import io
import json

from cqrs_flow.launcher.printer import Printer


def test_text_lines_are_prefixed_with_the_time_and_the_name():
    out = io.StringIO()
    printer = Printer(out, colour=False, clock=lambda: 0.0)
    printer.line("writer", "INFO    applied c1")
    assert out.getvalue().endswith(" writer    | INFO    applied c1\n")


def test_json_lines_pass_through_with_their_node_and_the_rest_becomes_json():
    out = io.StringIO()
    printer = Printer(out, colour=False, clock=lambda: 1_800_000_000.5, json_lines=True)
    printer.line("writer.2", '{"level": "INFO", "message": "applied c1"}')
    printer.line("store", "Traceback (most recent call last):")
    printer.system("error: node 'store' exited")
    first, second, third = map(json.loads, out.getvalue().splitlines())
    assert first == {"level": "INFO", "message": "applied c1", "node": "writer.2"}
    assert second == {
        "time": "2027-01-15T08:00:00.500Z",
        "level": "INFO",
        "node": "store",
        "message": "Traceback (most recent call last):",
    }
    assert third["level"] == "ERROR" and third["node"] == "cqrs-flow"
