"""yamlsource: plain data from YAML, with the line of every key path."""

from __future__ import annotations

import time

import pytest

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.topology.problems import Problems
from cqrs_flow.topology.yamlsource import MAX_VALUES, parse_yaml

NESTED = """\
name: demo
nodes:
  writer:
    commands:
      - add
      - remove
    delay: 3s
list:
  - a: 1
    b: 2
"""


def test_every_key_path_has_its_line():
    located = parse_yaml(NESTED)
    assert located.data == {
        "name": "demo",
        "nodes": {"writer": {"commands": ["add", "remove"], "delay": "3s"}},
        "list": [{"a": 1, "b": 2}],
    }
    assert located.lines[()] == 1
    assert located.lines[("name",)] == 1
    assert located.lines[("nodes",)] == 2
    assert located.lines[("nodes", "writer")] == 3
    assert located.lines[("nodes", "writer", "commands")] == 4
    assert located.lines[("nodes", "writer", "commands", 0)] == 5
    assert located.lines[("nodes", "writer", "commands", 1)] == 6
    assert located.lines[("nodes", "writer", "delay")] == 7
    assert located.lines[("list", 0)] == 9
    assert located.lines[("list", 0, "a")] == 9
    assert located.lines[("list", 0, "b")] == 10


def test_empty_document_is_an_empty_mapping():
    located = parse_yaml("")
    assert located.data == {}
    assert Problems(located).line(("anything",)) == 1


def test_duplicate_key_is_reported_with_its_line_and_path():
    text = "a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n"
    with pytest.raises(TopologyError, match=r"b\.c: duplicate key") as exc:
        parse_yaml(text, "t.yaml")
    assert exc.value.problems == [
        Problem(5, "b.c", "duplicate key (the later one would silently win)")
    ]
    assert exc.value.source == "t.yaml"
    assert "t.yaml:5: b.c: duplicate key" in str(exc.value)


def test_every_duplicate_key_is_reported():
    text = "a: 1\na: 2\nb:\n  c: 1\n  c: 2\n"
    with pytest.raises(TopologyError) as exc:
        parse_yaml(text)
    assert [(p.line, p.path) for p in exc.value.problems] == [(2, "a"), (5, "b.c")]


def test_syntax_error_reports_its_line():
    text = "a: 1\nb: [1, 2\nc: 3\n"
    with pytest.raises(TopologyError, match="not valid YAML") as exc:
        parse_yaml(text, "t.yaml")
    [problem] = exc.value.problems
    assert problem.line == 3  # where the parser found the unclosed flow sequence going wrong
    assert problem.message.startswith("not valid YAML: ")


def test_bad_indentation_reports_its_line():
    text = "a:\n  b: 1\n c: 2\n"
    with pytest.raises(TopologyError, match="not valid YAML") as exc:
        parse_yaml(text)
    assert exc.value.problems[0].line == 3


def test_more_than_one_document_is_refused():
    with pytest.raises(TopologyError, match="not valid YAML") as exc:
        parse_yaml("a: 1\n---\nb: 2\n")
    assert exc.value.problems[0].line == 2


def test_python_tags_are_refused():
    with pytest.raises(TopologyError, match="could not determine a constructor"):
        parse_yaml("a: !!python/name:os.system ''\n")


def test_python_tags_on_collections_construct_nothing(monkeypatch):
    import os

    calls = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args))
    located = parse_yaml("a: !!python/object/apply:os.system ['true']\n")
    assert located.data == {"a": ["true"]}  # plain data; nothing was called
    assert calls == []


def test_non_scalar_keys_are_reported():
    with pytest.raises(TopologyError, match="keys must be plain scalars") as exc:
        parse_yaml("a: 1\n? [1, 2]\n: 3\n")
    assert exc.value.problems[0].line == 2


def test_alias_bomb_is_refused_quickly():
    # Nine levels of ten aliases each would expand to 10**9 values.
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    started = time.monotonic()
    with pytest.raises(TopologyError, match=f"more than {MAX_VALUES} values") as exc:
        parse_yaml("\n".join(lines) + "\n")
    assert time.monotonic() - started < 5
    [problem] = exc.value.problems
    assert "refusing to load" in problem.message
    assert problem.line is not None


def test_modest_aliases_are_expanded():
    located = parse_yaml("base: &b [1, 2]\ncopy: *b\n")
    assert located.data == {"base": [1, 2], "copy": [1, 2]}
    assert located.lines[("copy",)] == 2


def test_merge_keys_are_resolved():
    text = """\
defaults: &defaults
  kind: writer
  delay: 3s
writer:
  <<: *defaults
  broker: broker
"""
    located = parse_yaml(text)
    assert located.data["writer"] == {"kind": "writer", "delay": "3s", "broker": "broker"}
    assert located.lines[("writer", "broker")] == 6
    # A merged key is traced to where it is written: in the anchored mapping.
    assert located.lines[("writer", "delay")] == 3


def test_merge_of_a_list_of_mappings():
    text = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n"
    assert parse_yaml(text).data["c"] == {"x": 1, "y": 2, "z": 3}


def test_merge_key_can_be_overridden():
    # Regression: the written key used to be reported as a duplicate of the merged one.
    text = "defaults: &defaults\n  delay: 3s\n  kind: writer\nfast:\n  <<: *defaults\n  delay: 0\n"
    located = parse_yaml(text)
    assert located.data["fast"] == {"delay": 0, "kind": "writer"}
    assert located.lines[("fast", "delay")] == 6


def test_recursive_alias_is_a_topology_error():
    # Regression: this used to recurse until RecursionError.
    with pytest.raises(TopologyError, match="recursive alias") as exc:
        parse_yaml("a: &x [*x]\n")
    assert exc.value.problems[0].line == 1


def test_aliased_mapping_that_overrides_a_merged_key():
    text = "base: &b {x: 1}\nw: &w\n  <<: *b\n  x: 2\ncopy: *w\n"
    assert parse_yaml(text).data == {"base": {"x": 1}, "w": {"x": 2}, "copy": {"x": 2}}
