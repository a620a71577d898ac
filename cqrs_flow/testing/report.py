"""What `cqrs-flow test` prints (a line per case, then each failure with its diff, then a
summary) and the JUnit XML file CI systems read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from cqrs_flow.testing.runner import Outcome

__all__ = ["case_line", "failure_text", "summary", "write_junit"]


def case_line(file: str, outcome: Outcome) -> str:
    word = "PASS" if outcome.passed else ("ERROR" if outcome.error else "FAIL")
    return f"{word:5} {file}::{outcome.case.name} ({outcome.seconds:.2f}s)"


def failure_text(file: str, outcome: Outcome) -> str:
    """Why a case failed: each failing check with its diff, and what the nodes logged."""
    line = f":{outcome.case.line}" if outcome.case.line else ""
    head = f"___ {file}{line}::{outcome.case.name} ___"
    body = [outcome.error] if outcome.error else outcome.failures
    lines = [head, *("  " + part.replace("\n", "\n  ") for part in body)]
    if outcome.log:
        lines.append("  the nodes logged:")
        lines.extend(f"    {entry}" for entry in outcome.log[-20:])
    return "\n".join(lines)


def summary(outcomes: list[tuple[str, Outcome]], seconds: float, deselected: int) -> str:
    passed = sum(1 for _, o in outcomes if o.passed)
    errors = sum(1 for _, o in outcomes if o.error)
    failed = len(outcomes) - passed - errors
    parts = [f"{passed} passed"]
    if failed:
        parts.append(f"{failed} failed")
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if deselected:
        parts.append(f"{deselected} deselected")
    return f"{', '.join(parts)} in {seconds:.2f}s"


def write_junit(
    path: Path, suite: str, outcomes: list[tuple[str, Outcome]], text: Callable[..., str]
) -> None:
    """A JUnit XML report: one testsuite, a testcase per case (classname: its file)."""
    failures = sum(1 for _, o in outcomes if o.failures and not o.error)
    errors = sum(1 for _, o in outcomes if o.error)
    root = ET.Element("testsuites")
    element = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(outcomes)),
        failures=str(failures),
        errors=str(errors),
        time=f"{sum(o.seconds for _, o in outcomes):.3f}",
    )
    for file, outcome in outcomes:
        case = ET.SubElement(
            element,
            "testcase",
            classname=file,
            name=outcome.case.name,
            time=f"{outcome.seconds:.3f}",
        )
        if not outcome.passed:
            tag = "error" if outcome.error else "failure"
            first = (outcome.error or outcome.failures[0]).splitlines()[0]
            detail = ET.SubElement(case, tag, message=first)
            detail.text = text(file, outcome)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
