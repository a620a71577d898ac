"""Relay cursors: opaque, tamper-evident, bound to their list."""

from __future__ import annotations

import pytest

from cqrs_flow.nodes.gateway.cursors import INVALID_CURSOR, Cursors
from cqrs_flow.nodes.gateway.refusals import Refused

POSITION = b'["1990",42]'


def test_a_cursor_gives_back_its_position_and_says_nothing_in_clear():
    cursors = Cursors("secret")
    cursor = cursors.make("Book", "year:asc", POSITION)
    assert cursors.read(cursor, "after", "Book", "year:asc") == POSITION
    assert "1990" not in cursor and "Book" not in cursor
    assert cursor.isascii() and "=" not in cursor and "+" not in cursor and "/" not in cursor


def test_the_same_secret_reads_another_gateways_cursor_and_another_secret_does_not():
    cursor = Cursors("secret").make("Book", "", POSITION)
    assert Cursors("secret").read(cursor, "after", "Book", "") == POSITION
    with pytest.raises(Refused, match="not a cursor this API gave") as refused:
        Cursors("other").read(cursor, "after", "Book", "")
    assert refused.value.code == INVALID_CURSOR


@pytest.mark.parametrize("change", range(0, 60, 7))
def test_any_changed_character_is_refused(change):
    cursors = Cursors("secret")
    cursor = cursors.make("Book", "", POSITION)
    i = change % len(cursor)
    tampered = cursor[:i] + ("A" if cursor[i] != "A" else "B") + cursor[i + 1 :]
    with pytest.raises(Refused, match="not a cursor this API gave"):
        cursors.read(tampered, "before", "Book", "")


@pytest.mark.parametrize("garbage", ["", "x", "not a cursor", "====", "é" * 10, "A" * 5000])
def test_garbage_is_refused_naming_the_argument(garbage):
    with pytest.raises(Refused, match="argument 'after' is not a cursor this API gave"):
        Cursors("secret").read(garbage, "after", "Book", "")


def test_a_cursor_of_another_list_is_refused_saying_whose_it_is():
    cursors = Cursors("secret")
    authors = cursors.make("Author", "", POSITION)
    with pytest.raises(Refused, match="a cursor of a list of Author in insertion order; this list"):
        cursors.read(authors, "after", "Book", "")
    by_year = cursors.make("Book", "year:desc", POSITION)
    with pytest.raises(Refused, match="ordered by year DESC; this list is of Book ordered by"):
        cursors.read(by_year, "after", "Book", "title:asc")
