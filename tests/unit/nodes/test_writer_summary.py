"""AppliedSummary: one INFO line per interval counts the commands applied, none while idle."""

from __future__ import annotations

import asyncio
import logging
import re

from cqrs_flow.nodes.writer import AppliedSummary

LINE = re.compile(
    r"applied (\d+) command\(s\) in the last ([\d.]+)s \((.*)\), the last ([\d.]+)s ago; "
    r"(\d+) since start"
)


def lines(caplog) -> list[re.Match[str]]:
    found = [LINE.fullmatch(r.getMessage()) for r in caplog.records]
    assert all(found), [r.getMessage() for r in caplog.records]
    return [m for m in found if m]


def test_commands_applied_within_an_interval_share_one_line(caplog):
    caplog.set_level(logging.INFO, "test.writer")

    async def main():
        summary = AppliedSummary(logging.getLogger("test.writer"), interval=0.05)
        for name in ("add_contact", "add_contact", "delete_contact"):
            summary.applied(name)
        assert not caplog.records  # nothing before the interval
        await asyncio.sleep(0.03)
        summary.applied("add_contact")
        await asyncio.sleep(0.04)  # the line came 0.05 s after the first command
        assert len(lines(caplog)) == 1
        await asyncio.sleep(0.1)  # idle: no line
        assert len(lines(caplog)) == 1
        assert summary.total == 4

    asyncio.run(main())
    (line,) = lines(caplog)
    count, seconds, names, ago, total = line.groups()
    assert (count, names, total) == ("4", "add_contact 3, delete_contact 1", "4")
    assert 0.04 <= float(seconds) < 0.1
    assert 0.0 < float(ago) < 0.04  # the last command came 0.03 s after the first


def test_flush_tells_what_is_pending_at_once_and_nothing_twice(caplog):
    caplog.set_level(logging.INFO, "test.writer")

    async def main():
        summary = AppliedSummary(logging.getLogger("test.writer"), interval=10)
        summary.flush()  # nothing pending: no line
        summary.applied("add_contact")
        summary.flush()
        summary.flush()
        summary.applied("add_contact")
        summary.flush()

    asyncio.run(main())
    assert [(m.group(1), m.group(5)) for m in lines(caplog)] == [("1", "1"), ("1", "2")]
