"""The gateway's pre-parse measure of a query: depth, fields, aliases, tokens, strings, lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_flow.nodes.gateway.limits import (
    Busy,
    LimitExceeded,
    RequestGate,
    TooManyRequests,
    caller_key,
    check_query,
    check_variables,
)
from cqrs_flow.topology.model import Limits

# The query the playground (GraphiQL) sends to learn the schema.
INTROSPECTION = (Path(__file__).parent / "introspection.graphql").read_text()


def refusal(query: str, **limits) -> str | None:
    try:
        check_query(query, Limits(**limits))
    except LimitExceeded as exc:
        return str(exc)
    return None


def test_the_default_limits_let_the_playground_introspect():
    assert refusal(INTROSPECTION) is None
    assert "limits.depth" in refusal(INTROSPECTION, depth=14)  # its TypeRef fragment nests deep


@pytest.mark.parametrize(
    "query, limits, expected",
    [
        ("{ a { b { c } } }", {"depth": 3}, None),
        ("{ a { b { c } } }", {"depth": 2}, "nests fields more than 2 levels deep (limits.depth)"),
        # an inline fragment is no deeper level; a fragment counts where it is spread
        ("{ a { ... on T { b } } }", {"depth": 2}, None),
        (
            "{ a { ...F } } fragment F on T { b { c } }",
            {"depth": 2},
            "with its fragments, the query nests",
        ),
        ("{ x: a y: b }", {"aliases": 1}, "more than 1 aliases (limits.aliases)"),
        ("{ a b c }", {"fields": 2}, "more than 2 fields (limits.fields)"),
        ("{ a(x: 1, y: 2) }", {"tokens": 10}, "more than 10 tokens (limits.tokens)"),
        ("# a long comment, not tokens\n{ a }", {"tokens": 4}, None),
        ('{ a(s: "abc") }', {"string_length": 3}, None),
        (
            '{ a(s: "abcd") }',
            {"string_length": 3},
            "longer than 3 characters (limits.string_length)",
        ),
        ('{ a(s: """abcd""") }', {"string_length": 3}, "limits.string_length"),
        ("{ a(l: [1, 2, [3, 4, 5]]) }", {"list_length": 3}, None),
        ("{ a(l: [1, 2, 3, $v]) }", {"list_length": 3}, "more than 3 items (limits.list_length)"),
        ("{ a(o: {k: [{k: [1]}]}) }", {"depth": 3}, None),
        (
            "{ a(o: " + "[" * 9 + "]" * 9 + ") }",
            {"depth": 3},
            "nests brackets more than 8 levels deep",
        ),
        (
            "{ " + "... { " * 9 + "a" + " }" * 9 + " }",
            {"depth": 3},
            "nests brackets more than 8 levels deep",
        ),
        # brackets and names inside strings are not structure
        ('{ a(s: "{ { { b c d } } }") }', {"depth": 1, "fields": 1}, None),
        ('{ a(s: """ \\""" { { b } } """) }', {"depth": 1, "fields": 1}, None),
    ],
)
def test_each_limit(query, limits, expected):
    found = refusal(query, **limits)
    assert found == expected if expected is None else expected in found


def test_fragments_spread_many_times_count_every_time():
    # 2**20 fields in a few hundred bytes
    query = "{ ...F0 } " + " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(20)
    )
    query += " fragment F20 on Query { a }"
    assert len(query) < 1200
    assert "with its fragments, the query selects more than 500 fields" in refusal(query)


def test_cyclic_and_unknown_fragments_are_left_to_the_validator():
    assert refusal("{ ...A ...Nope } fragment A on Q { ...B } fragment B on Q { ...A }") is None


@pytest.mark.parametrize("size", [10_000, 100_000])
def test_deep_nesting_is_refused_without_parsing(size):
    """libgraphqlparser crashes the process on about 100 000 levels; none of them reach it."""
    assert "limits.depth" in refusal("{" + "a{" * size + "}" * size + "}")
    assert "levels deep" in refusal("{a(x:" + "[" * size + "]" * size + ")}")


def test_unterminated_strings_do_not_make_the_measure_quadratic():
    # each quote would start a scan to the end of the text; 100 kB of them took seconds
    assert "limits.string_length" in refusal("{ a(x: " + '"\\' * 50_000 + ") }")


@pytest.mark.parametrize(
    "variables, expected",
    [
        ({"a": "x" * 10, "b": [1, 2], "c": {"d": [{"e": "y"}]}}, None),
        ({"a": "x" * 11}, "limits.string_length"),
        ({"a": [{"b": ["x" * 11]}]}, "limits.string_length"),
        ({"a": [0] * 4}, "limits.list_length"),
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, "limits.depth"),
        (None, None),
    ],
)
def test_variables(variables, expected):
    limits = Limits(string_length=10, list_length=3, depth=3)
    if expected is None:
        check_variables(variables, limits)
    else:
        with pytest.raises(LimitExceeded, match=expected):
            check_variables(variables, limits)


def test_the_gate_refuses_beyond_in_flight_at_once_and_frees_its_places():
    gate = RequestGate(Limits(in_flight=2))
    with gate.admitted(), gate.admitted():
        with pytest.raises(Busy, match=r"busy with 2 requests \(limits.in_flight\)"):
            with gate.admitted():
                pass
    with pytest.raises(RuntimeError):
        with gate.admitted():
            raise RuntimeError("a failed request frees its place too")
    assert gate.in_flight == 0


def test_a_websocket_counts_under_its_subject_once_it_says_who_calls():
    """A socket is counted under the client's address until connection_init, then under the
    caller's subject: one subject cannot hold more than websockets_per_caller from any number of
    addresses, while another subject from the same address still gets in."""
    gate = RequestGate(Limits(websockets=10, websockets_per_caller=2))
    ada, bob, address = caller_key("", "ada"), caller_key("", "bob"), "10.0.0.1"
    with gate.connected(address) as first, gate.connected("10.0.0.2") as second:
        first.move(ada)
        second.move(ada)  # ada's second socket, from another address
        assert gate.sockets == {ada: 2}
        with gate.connected(address) as third:
            with pytest.raises(TooManyRequests, match=r"limits.websockets_per_caller"):
                third.move(ada)
            assert gate.sockets == {ada: 2, address: 1}  # it keeps its place where it was
        with gate.connected(address) as other, gate.connected(address) as anonymous:
            other.move(bob)  # another subject from the same address
            anonymous.move(address)  # no token: the address stays its key
            assert gate.sockets == {ada: 2, bob: 1, address: 1}
    assert gate.connections == 0 and gate.sockets == {}


def test_the_gate_measures_a_text_once_and_still_refuses_one_over_the_limits(monkeypatch):
    from cqrs_flow.nodes.gateway import limits as module

    measured: list[str] = []
    real = module.check_query

    def counting(query, limits):
        measured.append(query)
        real(query, limits)

    monkeypatch.setattr(module, "check_query", counting)
    gate = RequestGate(Limits(depth=3))
    for _ in range(3):
        gate.check("{ a { b } }", None)
    assert measured == ["{ a { b } }"]  # the same text again is not measured again
    deep = "{ a { b { c { d { e } } } } }"
    for _ in range(2):
        with pytest.raises(LimitExceeded):
            gate.check(deep, None)
    assert measured.count(deep) == 2  # a text over the limits is never remembered
    with pytest.raises(LimitExceeded):
        gate.check("{ a { b } }", {"s": "x" * 20_000})  # its variables are checked every time


def test_the_gate_forgets_the_least_recently_seen_text(monkeypatch):
    from cqrs_flow.nodes.gateway import limits as module

    monkeypatch.setattr(module, "MEASURED", 2)
    gate = RequestGate(Limits())
    for text in ("{ a }", "{ b }", "{ a }", "{ c }"):
        gate.check(text, None)
    assert list(gate._measured) == ["{ a }", "{ c }"]
