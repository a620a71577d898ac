"""What the backends' finds share (stores/find.py), without a backend: the order of values, the
conditions, the plan chosen for a query, the pieces of an index a window reads, positions, and
the paging rules driven by a scripted backend. The backends themselves: test_find_contract.py."""

from __future__ import annotations

import pytest

from cqrs_flow.stores.base import BadPosition, BadQuery, Condition, Find, NotIndexed, Page
from cqrs_flow.stores.find import (
    MERGED,
    NOT_NULL,
    NOTHING,
    ORDERED,
    SORTED,
    Bound,
    Count,
    Indexes,
    Interval,
    Piece,
    Place,
    Row,
    Scan,
    condition_values,
    pages,
    plan,
    run,
    sort_key,
    successor,
)

INDEXES = Indexes("id", ("city", "year", "name"))


def test_values_sort_by_kind_then_value():
    values = [True, "b", None, 3, -1.5, "", False, 2.0, "é", [1], {"a": 1}, float("nan")]
    ordered = sorted(values, key=sort_key)
    assert ordered[:4] == [None, [1], {"a": 1}, ordered[3]]  # lists, messages, NaN sort as null
    assert ordered[4:] == [-1.5, 2.0, 3, "", "b", "é", False, True]
    assert sort_key(2) == sort_key(2.0) and sort_key(1) != sort_key(True)


@pytest.mark.parametrize(
    "prefix, following",
    [
        ("ab", "ac"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("", None),
        ("x\ud7ff", "x\ue000"),  # past the surrogates, which UTF-8 has no bytes for
        ("Zürich", "Zürici"),
    ],
)
def test_the_strings_a_prefix_matches_end_before_its_successor(prefix, following):
    assert successor(prefix) == following
    if following is not None:
        assert prefix < following
        assert all(s < following for s in (prefix, prefix + "\U0010ffff", prefix + "zzz"))


def test_conditions_become_the_values_they_allow():
    def values(op, *given):
        return condition_values(Condition("f", op, given))

    assert values("gt", 5) == (Interval((1, 5), False, (1.5,), False),)  # numbers above 5
    assert values("lte", "m") == (Interval((2,), True, (2, "m"), True),)  # strings up to m
    assert values("in", 1, 1.0, "a", 1) == (Interval.point((1, 1)), Interval.point((2, "a")))
    assert values("prefix", "ab") == (Interval((2, "ab"), True, (2, "ac"), False),)
    assert values("prefix", "") == (Interval((2, ""), True, (2.5,), True),)
    assert values("gt", False) == (Interval.point((3, True)),)  # booleans: one or both
    assert values("lt", False) == ()
    assert values("gte", False) == (Interval.point((3, False)), Interval.point((3, True)))


def test_intervals_meet_and_hold():
    numbers_above_5 = Interval((1, 5), False, (1.5,), False)
    strings = Interval((2,), True, (2.5,), False)
    assert (numbers_above_5 & strings).empty
    assert (numbers_above_5 & Interval((1,), True, (1, 9), True)) == Interval(
        (1, 5), False, (1, 9), True
    )
    assert numbers_above_5.contains((1, 5.5)) and not numbers_above_5.contains((1, 5))
    assert not numbers_above_5.contains((2, "6"))
    after_null = Interval() & Interval((0, None), False)
    assert after_null.lo == NOT_NULL and not after_null.contains((0, None))


def test_a_plan_reads_the_index_a_page_needs():
    def chosen(**asked):
        found = plan(Find(**asked), INDEXES, "books")
        return found.mode, found.drive

    city = Condition("city", "eq", ("Oslo",))
    years = Condition("year", "in", (1990, 2000, 2010))
    recent = Condition("year", "gte", (2000,))
    assert chosen() == (ORDERED, None)  # the insertion-order index
    assert chosen(order_by="name") == (ORDERED, "name")
    assert chosen(where=(city,)) == (MERGED, "city")  # its entries are in insertion order
    assert chosen(where=(years, city)) == (MERGED, "city")  # the fewest values
    assert chosen(where=(recent,)) == (SORTED, "year")  # a range: its matches sorted by seq
    assert chosen(where=(city, recent), order_by="year") == (ORDERED, "year")
    assert chosen(where=(city,), order_by="name") == (SORTED, "city")
    assert chosen(where=(city, Condition("city", "eq", ("Bergen",)))) == (NOTHING, None)
    assert chosen(where=(city,), order_by="id") == (SORTED, "city")


def test_the_refusals_name_what_to_do():
    with pytest.raises(NotIndexed, match=r"^'year' is not indexed; the indexed fields of b"):
        plan(Find(order_by="year"), Indexes("id", ("title",)), "b")
    with pytest.raises(NotIndexed, match="did you mean 'city'"):
        plan(Find(where=(Condition("cty", "eq", ("x",)),)), INDEXES, "books")
    with pytest.raises(BadQuery, match="did you mean 'prefix'"):
        plan(Find(where=(Condition("city", "prefx", ("x",)),)), INDEXES, "books")
    assert Indexes("id", ("a", "id", "b")).names == ("id", "a", "b")


def test_the_pieces_of_a_window():
    found = plan(Find(order_by="year"), INDEXES, "books")
    window = found.window(Bound(Place(1999, 7)), Bound(Place(2005, 3)), False)
    assert found.pieces(window) == [
        Piece(Interval.point((1, 1999)), (7, False), None),  # after seq 7 among the 1999s
        Piece(Interval((1, 1999), False, (1, 2005), False)),  # the years between
        Piece(Interval.point((1, 2005)), None, (3, False)),  # before seq 3 among the 2005s
    ]
    everything = found.pieces(found.window(None, None, False))
    assert everything == [Piece(Interval.point((0, None))), Piece(Interval(NOT_NULL, True))]
    after_null = found.pieces(found.window(Bound(Place(None, 4), True), None, False))
    assert after_null == [
        Piece(Interval.point((0, None)), (4, True), None),
        Piece(Interval(NOT_NULL, True, None, True)),
    ]
    descending = plan(Find(order_by="year", descending=True), INDEXES, "books")
    window = descending.window(Bound(Place(2005, 3)), None, False)  # after 2005: the years below
    assert window.backwards and window.hi == Bound(Place(2005, 3)) and window.lo is None
    filtered = plan(
        Find(order_by="year", where=(Condition("year", "in", (1990, 2000, 2010)),)),
        INDEXES,
        "books",
    )
    assert filtered.pieces(filtered.window(Bound(Place(2000, 5)), None, False)) == [
        Piece(Interval.point((1, 2000)), (5, False), None),
        Piece(Interval.point((1, 2010))),
    ]


def test_positions_go_and_come_back():
    found = plan(Find(order_by="name"), INDEXES, "books")
    for value in ("Émile", 3, 2.5, None, True, ""):
        assert found.decode(found.encode(Place(value, 12)), int) == Place(value, 12)
    position = found.encode(Place("x", 12))
    with pytest.raises(BadPosition, match="does not decode"):
        found.decode(position, str)  # another backend's kind of insertion order
    with pytest.raises(BadPosition, match="'name', ascending; this find is in the order of 'name'"):
        plan(Find(order_by="name", descending=True), INDEXES, "books").decode(position, int)
    with pytest.raises(BadPosition, match="a find over books, not authors"):
        plan(Find(order_by="name"), INDEXES, "authors").decode(position, int)


class Script:
    """A backend of sorted places 0..n-1 (seq = value): answers scans by counting."""

    def __init__(self, found, count, missing=()):
        self.found, self.count, self.asked, self.missing = found, count, [], set(missing)

    def __call__(self, request):
        self.asked.append(request)
        if isinstance(request, Count):
            return self.count
        assert isinstance(request, Scan)
        window = self.found.window(request.lower, request.upper, request.reverse)
        rows = [
            Row(f"k{i}", Place(None, i), {"id": f"k{i}"} if request.documents else None)
            for i in range(self.count)
            if self.found.in_window(Place(None, i), window) and i not in self.missing
        ]
        rows = rows[::-1] if window.backwards else rows
        return rows if request.limit is None else rows[: request.limit]


def page_of(count, missing=(), **asked):
    query = Find(**asked)
    found = plan(query, INDEXES, "books")
    script = Script(found, count, missing)
    page = run(pages(query, found, int), script)
    return page, script.asked


def test_a_first_page_asks_for_one_document_more_and_nothing_else():
    page, asked = page_of(100, first=20)
    assert [d["id"] for d in page.documents] == [f"k{i}" for i in range(20)]
    assert (page.has_next, page.has_previous) == (True, False)
    assert asked == [Scan(None, None, False, 21)]


def test_a_page_after_a_position_knows_what_is_before_it_from_that_document():
    found = plan(Find(), INDEXES, "books")
    at_89 = found.encode(Place(None, 89))
    page, asked = page_of(100, first=20, after=at_89, total=True)
    assert [d["id"] for d in page.documents] == [f"k{i}" for i in range(90, 100)]
    assert (page.has_next, page.has_previous, page.total) == (False, True, 100)
    # the window is read from the position on, included: its document is there, so something
    # is before the page; one request for the page, one for the count
    assert asked == [Scan(Bound(Place(None, 89), True), None, False, 22), Count()]
    page, asked = page_of(100, missing={89}, first=20, after=at_89)  # that document is gone
    assert (len(page.documents), page.has_previous) == (10, True)
    assert asked[1:] == [Scan(None, Bound(Place(None, 90)), True, 1, documents=False)]
    page, asked = page_of(100, missing=range(90), first=5, after=at_89)
    assert (page.has_previous, len(asked)) == (False, 2)  # asked, and nothing is there
    before_95 = found.encode(Place(None, 95))
    page, asked = page_of(100, last=2, before=before_95, after=at_89)
    assert [d["id"] for d in page.documents] == ["k93", "k94"]
    assert (page.has_next, page.has_previous, len(asked)) == (True, True, 1)


def test_an_empty_page_sits_where_its_window_starts_or_ends():
    found = plan(Find(), INDEXES, "books")
    at_50 = found.encode(Place(None, 50))
    page, _ = page_of(100, first=0, after=at_50)
    assert (page.documents, page.has_next, page.has_previous) == ([], True, True)
    page, _ = page_of(100, last=0, before=at_50)
    assert (page.has_next, page.has_previous) == (True, True)
    page, _ = page_of(100, last=0)
    assert (page.has_next, page.has_previous) == (False, True)
    page, _ = page_of(0, first=5, total=True)
    assert page == Page(total=0)
