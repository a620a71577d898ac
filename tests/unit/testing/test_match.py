"""What a partial document matches, the diff shown, and captured values put in place."""

from __future__ import annotations

from cqrs_flow.testing.match import contains, diff, substitute


def test_a_part_matches_more_and_lists_match_item_by_item():
    assert contains({"id": "a"}, {"id": "a", "name": "Ada"})
    assert not contains({"id": "a", "name": "Bob"}, {"id": "a", "name": "Ada"})
    assert contains([{"id": "b"}, {"id": "a"}], [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    assert not contains([{"id": "a"}, {"id": "a"}], [{"id": "a"}])  # each needs its own
    assert contains({"n": 1.0}, {"n": 1}) and not contains({"n": 1}, {"n": "1"})
    assert not contains({"x": None}, {})


def test_the_diff_shows_expected_against_actual():
    text = diff({"name": "Ada"}, {"name": "Bob"})
    assert '-  "name": "Ada"' in text and '+  "name": "Bob"' in text


def test_captured_values_replace_whole_strings_and_placeholders():
    captured = {"id": "c1", "n": 3}
    assert substitute({"key": "$id", "count": "$n"}, captured) == {"key": "c1", "count": 3}
    assert (
        substitute('{ contact(id: "${id}") { name } }', captured)
        == '{ contact(id: "c1") { name } }'
    )
    assert substitute(["$other", "query($id: String!)"], captured) == [
        "$other",
        "query($id: String!)",
    ]
