"""problems: the one collector of problems (key path, line, message) and the one did-you-mean."""

from __future__ import annotations

import pytest

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.topology.problems import Problems, did_you_mean, format_path, suggest
from cqrs_flow.topology.yamlsource import parse_yaml

from .test_yamlsource import NESTED


def test_line_of_an_unknown_path_is_that_of_its_nearest_ancestor():
    problems = Problems(parse_yaml(NESTED))
    assert problems.line(("nodes", "writer", "nosuchkey", "deeper")) == 3
    assert problems.line(("list", 0, "c")) == 9
    assert problems.line(("nothing",)) == 1


def test_a_problem_carries_line_and_formatted_path():
    problems = Problems(parse_yaml(NESTED))
    problems(("nodes", "writer", "commands", 1), "bad")
    problems(("name",), "elsewhere", line=40)
    assert problems.problems == [
        Problem(6, "nodes.writer.commands[1]", "bad"),
        Problem(40, "name", "elsewhere"),
    ]


def test_a_problem_found_twice_is_kept_once():
    problems = Problems(parse_yaml(NESTED))
    for _ in range(2):
        problems(("name",), "bad")
    assert len(problems.problems) == 1


def test_without_lines_a_problem_has_none():
    problems = Problems()
    problems(("nodes", "x"), "bad")
    assert problems.problems == [Problem(None, "nodes.x", "bad")]


def test_raise_any_raises_only_with_problems():
    problems = Problems()
    problems.raise_any("t.yaml")  # nothing collected: nothing raised
    problems(("name",), "bad")
    with pytest.raises(TopologyError, match=r"t\.yaml: 1 problem") as caught:
        problems.raise_any("t.yaml")
    assert caught.value.problems == problems.problems


@pytest.mark.parametrize(
    "path, text",
    [
        ((), ""),
        (("nodes",), "nodes"),
        (("nodes", "writer", "commands", 0), "nodes.writer.commands[0]"),
        ((0, "a"), "[0].a"),
    ],
)
def test_format_path(path, text):
    assert format_path(path) == text


def test_suggest_finds_the_close_choice_or_none():
    assert suggest("wirter", ["writer", "reader", "gateway"]) == "writer"
    assert suggest("zzz", ["writer", "reader"]) is None
    assert suggest(3, [1, 3]) == "3"  # any value, compared as text
    assert suggest("strng", ["string"], cutoff=0.95) is None


def test_did_you_mean_ends_a_message_or_says_nothing():
    assert did_you_mean("topcis", ["topics", "commands"]) == "; did you mean 'topics'?"
    assert did_you_mean("zzz", ["topics"]) == ""
