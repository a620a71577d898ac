"""Case files: a good one is read; a broken one reports every problem with key path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_flow.errors import TopologyError
from cqrs_flow.testing.cases import load_cases

from ..helpers import ROOT, line_of

GOOD = """\
cases:
  - name: added
    given:
      - documents: {Contact: [{id: c1, name: Ada}]}
    when:
      - mutation: 'mutation { addContact(name: "Bob") { id } }'
        capture: {id: addContact.id}
      - advance: 1s
    then:
      - store: Contact
        holds: [{id: $id}]
      - status: APPLIED
"""

BROKEN = """\
cases:
  - name: first
    when:
      - mutaton: 'mutation { x }'
    then:
      - store: Contact
        hold: [{id: c1}]
      - status: DONE
  - name: first
    when: [{advance: soon}]
    then: [{query: '{ x }'}]
  - name: second
    then: []
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.cases.yaml"
    path.write_text(text)
    return path


def test_a_good_file_is_read(tmp_path: Path):
    cases = load_cases(write(tmp_path, GOOD)).cases
    assert [c.name for c in cases] == ["added"]
    (case,) = cases
    assert [s.kind for s in case.given] == ["documents"]
    assert [s.kind for s in case.when] == ["mutation", "advance"]
    assert case.when[1].value == 1.0 and not case.when[1].settles and case.when[0].settles
    assert [c.kind for c in case.then] == ["store", "status"]
    assert case.then[0].where == "cases[0].then[0]" and case.line == 2


def test_a_broken_file_names_key_path_and_line_of_every_problem(tmp_path: Path):
    path = write(tmp_path, BROKEN)
    with pytest.raises(TopologyError) as raised:
        load_cases(path)
    found = {(p.path, p.line): p.message for p in raised.value.problems}
    step = ("cases[0].when[0]", line_of(BROKEN, "mutaton"))
    assert "did you mean 'mutation'" in found[step]
    hold = ("cases[0].then[0].hold", line_of(BROKEN, "hold:"))
    assert "did you mean 'holds'" in found[hold]
    status = ("cases[0].then[1].status", line_of(BROKEN, "DONE"))
    assert "one of QUEUED, APPLIED, FAILED" in found[status]
    assert "another case is named 'first'" in found[("cases[1].name", line_of(BROKEN, "first", 2))]
    assert "a duration" in found[("cases[1].when[0].advance", line_of(BROKEN, "soon"))]
    assert "needs returns" in found[("cases[1].then[0]", line_of(BROKEN, "{ x }", 2))]
    assert "every case has 'when'" in found[("cases[2].when", line_of(BROKEN, "second"))]
    assert str(path) in str(raised.value)


def test_every_shipped_case_file_is_valid():
    files = [ROOT / "topology.cases.yaml", *sorted((ROOT / "examples").glob("*/*.cases.yaml"))]
    for file in files:
        assert load_cases(file).cases, file
