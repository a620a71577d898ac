"""`cqrs-flow test` through the CLI, as CI runs it: every shipped case file passes with its
count of cases, a failing case exits 1 with a readable diff, a broken case file names key path
and line, and the write delay is virtual."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from system import EXAMPLES, cli

ROOT = EXAMPLES.parent
SHIPPED = [
    ROOT / "topology.yaml",
    EXAMPLES / "library" / "topology.yaml",
    EXAMPLES / "contacts-mosquitto" / "topology.yaml",
]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli(), "test", *map(str, args)], capture_output=True, text=True, timeout=150
    )


@pytest.mark.parametrize("topology", SHIPPED, ids=lambda p: p.parent.name or "contacts")
def test_every_shipped_case_file_passes(topology: Path, tmp_path: Path):
    cases = yaml.safe_load(topology.with_name("topology.cases.yaml").read_text())["cases"]
    junit = tmp_path / "junit.xml"
    done = run(topology, "--junit-xml", junit)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASS ") == len(cases)
    assert f"{len(cases)} passed in " in done.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == str(len(cases))
    assert suite.get("failures") == "0" and suite.get("errors") == "0"


def test_a_failing_case_exits_1_with_a_diff(tmp_path: Path):
    cases = tmp_path / "wrong.cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: expects another name\n"
        "    when:\n"
        "      - mutation: 'mutation { addContact(name: \"Ada\") { id } }'\n"
        "    then:\n"
        "      - store: Contact\n"
        "        holds: [{name: Bob}]\n"
        "  - name: passes\n"
        "    when: [{advance: 1s}]\n"
        "    then: [{store: Contact, count: 0}]\n"
    )
    done = run(ROOT / "topology.yaml", cases)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  wrong.cases.yaml::expects another name" in done.stdout
    assert "PASS  wrong.cases.yaml::passes" in done.stdout
    assert "Contact holds no document matching it" in done.stdout
    assert '-  "name": "Bob"' in done.stdout and '+    "name": "Ada"' in done.stdout
    assert "1 passed, 1 failed in " in done.stdout
    selected = run(ROOT / "topology.yaml", cases, "-k", "PASSES")
    assert selected.returncode == 0 and "1 passed, 1 deselected" in selected.stdout


def test_a_broken_case_file_names_key_path_and_line(tmp_path: Path):
    cases = tmp_path / "broken.cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: misspelt\n"
        "    when: [{advance: 1s}]\n"
        "    then:\n"
        "      - store: Contact\n"
        "        coutn: 1\n"
    )
    done = run(ROOT / "topology.yaml", cases)
    assert done.returncode == 1
    assert f"{cases}:6: cases[0].then[0].coutn:" in done.stderr
    assert "did you mean 'count'?" in done.stderr
    assert "PASS" not in done.stdout  # nothing ran


def test_the_write_delay_is_virtual(tmp_path: Path):
    """The contacts writer waits 3 s; the case that waits for it takes well under a second."""
    topology = yaml.safe_load((ROOT / "topology.yaml").read_text())
    assert topology["nodes"]["writer"]["delay"] == "3s"
    junit = tmp_path / "junit.xml"
    done = run(ROOT / "topology.yaml", "-k", "stored and listed", "--junit-xml", junit)
    assert done.returncode == 0, done.stdout + done.stderr
    (case,) = ET.parse(junit).getroot().iter("testcase")
    assert float(case.get("time", "9")) < 1.0
