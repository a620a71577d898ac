"""What every backend's `find` shares: checking a query against the collection's indexes, the order
of values, which part of which index a page reads, the paging rules, and positions.

A backend answers a few requests of its own (`Scan`, `Count`, `Fetch`); `pages` turns a `Find`
into those requests and their answers into a `Page`, as a generator, so that the same rules run
synchronously inside one SQLite read and asynchronously against MongoDB (`run`, `run_async`).
Why it is built so: docs/ARCHITECTURE.md, "Finding documents".
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cqrs_flow.stores.base import (
    BadPosition,
    BadQuery,
    Condition,
    Document,
    Find,
    NotIndexed,
    Page,
)
from cqrs_flow.topology import spec
from cqrs_flow.topology.problems import did_you_mean

__all__ = [
    "BOOLEAN",
    "MERGED",
    "NOTHING",
    "NOT_NULL",
    "NULL",
    "NUMBER",
    "ORDERED",
    "SORTED",
    "STRING",
    "Bound",
    "Count",
    "Fetch",
    "Indexes",
    "Interval",
    "Piece",
    "Place",
    "Plan",
    "Request",
    "Row",
    "Scan",
    "Values",
    "Window",
    "condition_values",
    "kind",
    "matches",
    "pages",
    "plan",
    "run",
    "run_async",
    "sort_key",
    "successor",
]

# -- the order of values ---------------------------------------------------------------------------

# Kinds of value, in the order MongoDB sorts them: null (or missing), numbers, strings, booleans.
NULL, NUMBER, STRING, BOOLEAN = 0, 1, 2, 3
KIND_NAMES = {NUMBER: "number", STRING: "string", BOOLEAN: "boolean"}

Key = tuple[Any, ...]
"""A value's place among values (sort_key), or a bound between kinds: (k,) is below every value of
kind k, (k + 0.5,) above them all. Python compares keys as the backends compare values."""

NOT_NULL: Key = (NULL + 0.5,)  # above null, below every value
_INT64 = 2**63


def kind(value: Any) -> int | None:
    """The kind of an indexable value; None for anything else (a list, a message, NaN)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return NUMBER
    if isinstance(value, float):
        return None if math.isnan(value) else NUMBER
    if isinstance(value, str):
        return STRING
    return None


def sort_key(value: Any) -> Key:
    """Where a document's value sorts: by kind, then by value. A value that is no indexable scalar
    sorts (and matches) as a missing one."""
    found = kind(value)
    return (NULL, None) if found is None or found == NULL else (found, value)


def successor(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: there is none), so
    that `prefix` matches the strings from `prefix` up to it: a range an index answers."""
    text = prefix
    while text:
        last = ord(text[-1])
        if last < 0x10FFFF:
            following = last + 1 if last + 1 != 0xD800 else 0xE000  # no surrogates in UTF-8
            return text[:-1] + chr(following)
        text = text[:-1]
    return None


@dataclass(frozen=True)
class Interval:
    """The values from `lo` to `hi` (keys; each bound included or not; None: no bound)."""

    lo: Key | None = None
    lo_in: bool = True
    hi: Key | None = None
    hi_in: bool = True

    @classmethod
    def point(cls, key: Key) -> Interval:
        return cls(key, True, key, True)

    @property
    def is_point(self) -> bool:
        """One value (not a bound between kinds)."""
        return self.lo is not None and self.lo == self.hi and len(self.lo) == 2

    @property
    def empty(self) -> bool:
        if self.lo is None or self.hi is None:
            return False
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_in and self.hi_in))

    def contains(self, key: Key) -> bool:
        if self.lo is not None and (key < self.lo or (key == self.lo and not self.lo_in)):
            return False
        return not (self.hi is not None and (key > self.hi or (key == self.hi and not self.hi_in)))

    def __and__(self, other: Interval) -> Interval:
        lo, lo_in = self.lo, self.lo_in
        if other.lo is not None and (
            lo is None or other.lo > lo or (other.lo == lo and not other.lo_in)
        ):
            lo, lo_in = other.lo, other.lo_in
        hi, hi_in = self.hi, self.hi_in
        if other.hi is not None and (
            hi is None or other.hi < hi or (other.hi == hi and not other.hi_in)
        ):
            hi, hi_in = other.hi, other.hi_in
        if lo == sort_key(None) and not lo_in:
            lo, lo_in = NOT_NULL, True  # after null: one bound, whatever the kind that follows
        return Interval(lo, lo_in, hi, hi_in)


EVERYTHING = (Interval(),)
Values = tuple[Interval, ...]
"""The values a field may take: disjoint intervals in order (points, or one range); () none."""


def _intersect(a: Values, b: Values) -> Values:
    both = [i & j for i in a for j in b]
    return tuple(sorted((i for i in both if not i.empty), key=_lower_key))


def _lower_key(interval: Interval) -> tuple[int, Key]:
    return (0, ()) if interval.lo is None else (1, interval.lo)


def _check_value(condition: Condition, value: Any) -> int:
    found = kind(value)
    if found in (None, NULL) or (isinstance(value, float) and math.isinf(value)):
        raise BadQuery(
            f"'{condition.field}' {condition.op} {value!r}: a condition compares with a "
            "string, a finite number or a boolean"
        )
    if found == NUMBER and isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise BadQuery(f"'{condition.field}' {condition.op} {value}: beyond 64-bit integers")
    assert found is not None
    return found


def condition_values(condition: Condition) -> Values:
    """The values a condition lets a field take; BadQuery for a condition that means nothing."""
    op, values, name = condition.op, tuple(condition.values), condition.field
    if op not in spec.FILTER_OPS:
        raise BadQuery(
            f"'{name}' {op}: no such condition; conditions are {', '.join(spec.FILTER_OPS)}"
            + did_you_mean(op, spec.FILTER_OPS)
        )
    if op == "in" and not values:
        raise BadQuery(f"'{name}' in: give at least one value")
    if op != "in" and len(values) != 1:
        raise BadQuery(f"'{name}' {op}: give exactly one value, not {len(values)}")
    kinds = [_check_value(condition, value) for value in values]
    if op in ("eq", "in"):
        keys = sorted({sort_key(value) for value in values})
        return tuple(Interval.point(key) for key in keys)
    value, found = values[0], kinds[0]
    if op == "prefix":
        if found != STRING:
            raise BadQuery(
                f"'{name}' prefix {value!r}: prefix compares strings, and {value!r} is a "
                f"{KIND_NAMES[found]}"
            )
        end = successor(value)
        hi = (STRING + 0.5,) if end is None else (STRING, end)
        return (Interval((STRING, value), True, hi, end is None),)
    if found == BOOLEAN:  # two values: the range is one or both of them, or neither
        points = [b for b in (False, True) if _compare(b, op, value)]
        return tuple(Interval.point((BOOLEAN, b)) for b in points)
    key, bottom, top = (found, value), (found,), (found + 0.5,)
    if op in ("gt", "gte"):
        return (Interval(key, op == "gte", top, False),)
    return (Interval(bottom, True, key, op == "lte"),)


def _compare(a: bool, op: str, b: bool) -> bool:
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


# -- what a collection's finds may use ------------------------------------------------------------


@dataclass(frozen=True)
class Indexes:
    """What finds over a collection may filter and order on: the entity's key field (always: each
    backend has the key indexed already) and its indexed fields (top-level scalar fields)."""

    key: str = spec.ENTITY.fields["key"].default
    fields: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The key field first, then the indexed fields, each once."""
        return tuple(dict.fromkeys((self.key, *self.fields)))

    @property
    def secondary(self) -> tuple[str, ...]:
        """The indexed fields besides the key (each needs an index of its own)."""
        return tuple(name for name in self.names if name != self.key)

    def check(self, name: str, collection: str) -> None:
        if name not in self.names:
            raise NotIndexed(
                f"'{name}' is not indexed; the indexed fields of {collection} are: "
                + ", ".join(self.names)
                + did_you_mean(name, self.names)
            )


# -- places, positions and the plan --------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A document's place in an order: its order value (None in insertion order) and its
    insertion order (`seq`: an int in memory and SQLite, a UUIDv7 string in MongoDB)."""

    value: Any
    seq: Any


@dataclass(frozen=True)
class Bound:
    """One end of a window of an order: the places after (before) `place`, and it too if
    `inclusive`."""

    place: Place
    inclusive: bool = False


@dataclass(frozen=True)
class Piece:
    """A run of one index in its own (ascending) order: the entries whose value is in `values`
    (a point: one value, whose entries are in insertion order) and whose insertion order is within
    `seq_lo`/`seq_hi` ((seq, included) or None). `values` None: the insertion-order index."""

    values: Interval | None
    seq_lo: tuple[Any, bool] | None = None
    seq_hi: tuple[Any, bool] | None = None


@dataclass(frozen=True)
class Row:
    """A document a scan found: its key, its place in the find's order, and the document (None
    when the scan was asked for places only)."""

    key: str
    place: Place
    document: Document | None


@dataclass(frozen=True)
class Scan:
    """Ask the backend for the documents of the plan strictly between `lower` and `upper` (in the
    find's order; None: no bound), the first `limit` of them (None: all) from the lower end, or
    from the upper end if `reverse` (then in reverse order). `documents` False: places only."""

    lower: Bound | None
    upper: Bound | None
    reverse: bool
    limit: int | None
    documents: bool = True


@dataclass(frozen=True)
class Count:
    """Ask the backend how many documents match the plan's conditions."""


@dataclass(frozen=True)
class Fetch:
    """Ask the backend for the documents with these keys: (key, document) for those it has."""

    keys: tuple[str, ...]


Request = Scan | Count | Fetch
ORDERED, MERGED, SORTED, NOTHING = "ordered", "merged", "sorted", "nothing"
_FORMAT = b"\x01"  # of positions: this byte, then [collection, order, descending, value, seq]
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_QUOTE = json.encoder.encode_basestring


def _scalar_json(value: Any) -> str:
    """A place's value or seq as JSON, faster than json.dumps (a page encodes one per document)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text: str = _QUOTE(value)
        return text
    if isinstance(value, int):
        return int.__repr__(value)
    if math.isinf(value):
        return "1e999" if value > 0 else "-1e999"  # JSON has no infinity; this reads back as one
    return float.__repr__(value)


@dataclass(frozen=True)
class Plan:
    """How a find is answered: the checked conditions by field (`sets`), the order, and the index
    that drives it (`drive`: a field, or None for the insertion-order index), and how that index
    is read (`mode`):

    - ORDERED: the drive is the order's own index (the order field, or insertion order): its
      pieces are read in order, one after the other, and a page costs what it holds;
    - MERGED: insertion order, driven by a field with a few values (eq, in): each value's entries
      are in insertion order already, and are merged;
    - SORTED: ordered by another field than the one filtered on (or insertion order filtered by
      a range): the filter's matches are read and sorted, a cost that grows with the matches;
    - NOTHING: the conditions cannot all hold, and nothing is read.

    Conditions on other fields than the drive are checked on each document the drive reads.
    """

    collection: str
    key_field: str
    order: str | None
    descending: bool
    sets: dict[str, Values]
    drive: str | None
    mode: str
    keys: tuple[str, ...] | None = None

    @property
    def filters(self) -> dict[str, Values]:
        """The conditions checked on the documents the drive reads."""
        return {name: values for name, values in self.sets.items() if name != self.drive}

    def describe(self) -> str:
        return _describe_order(self.order, self.descending)

    # -- the places of the order

    def place_of(self, key: str, seq: Any, document: Document | None) -> Place:
        """A document's place in this order (its order value read from the document, or its
        key for the key field)."""
        if self.order is None:
            return Place(None, seq)
        if self.order == self.key_field:
            return Place(key, seq)
        value = None if document is None else document.get(self.order)
        return Place(value if kind(value) is not None else None, seq)

    def place_key(self, place: Place) -> tuple[Any, ...]:
        """Places compare as their keys (ascending index order)."""
        return (place.seq,) if self.order is None else (sort_key(place.value), place.seq)

    def window(self, lower: Bound | None, upper: Bound | None, reverse: bool) -> Window:
        """The scan's window in the index's ascending order, and whether to read it backwards."""
        if self.descending:
            return Window(upper, lower, not reverse)
        return Window(lower, upper, reverse)

    def in_window(self, place: Place, window: Window) -> bool:
        key = self.place_key(place)
        if window.lo is not None:
            lo = self.place_key(window.lo.place)
            if key < lo or (key == lo and not window.lo.inclusive):
                return False
        if window.hi is not None:
            hi = self.place_key(window.hi.place)
            if key > hi or (key == hi and not window.hi.inclusive):
                return False
        return True

    def pieces(self, window: Window) -> list[Piece]:
        """The runs of the drive index that hold the window, in ascending order (ORDERED and
        MERGED plans)."""
        lo, hi = window.lo, window.hi
        seq_lo = None if lo is None else (lo.place.seq, lo.inclusive)
        seq_hi = None if hi is None else (hi.place.seq, hi.inclusive)
        if self.mode == MERGED:  # insertion order: each value's run, within the seqs
            return [Piece(point, seq_lo, seq_hi) for point in self.sets[self.drive or ""]]
        if self.order is None:
            return [Piece(None, seq_lo, seq_hi)]
        values = self.sets.get(self.order, EVERYTHING)
        k1 = None if lo is None else sort_key(lo.place.value)
        k2 = None if hi is None else sort_key(hi.place.value)
        if k1 is not None and k2 is not None:
            if k1 > k2:
                return []
            if k1 == k2:
                inside = any(i.contains(k1) for i in values)
                return [Piece(Interval.point(k1), seq_lo, seq_hi)] if inside else []
        pieces: list[Piece] = []
        if k1 is not None and any(i.contains(k1) for i in values):
            pieces.append(Piece(Interval.point(k1), seq_lo, None))
        middle = Interval(k1, k1 is None, k2, k2 is None)
        for interval in values:
            part = interval & middle
            if part.empty:
                continue
            if part.is_point:
                pieces.append(Piece(part))
                continue
            if part.contains(sort_key(None)):  # null sorts first: a run of its own
                if self.order != self.key_field:  # (keys are never null)
                    pieces.append(Piece(Interval.point(sort_key(None))))
                part = part & Interval(NOT_NULL, True)
                if part.empty:
                    continue
            pieces.append(Piece(part))
        if k2 is not None and any(i.contains(k2) for i in values):
            pieces.append(Piece(Interval.point(k2), None, seq_hi))
        return pieces

    # -- positions

    @cached_property
    def _head(self) -> bytes:
        """What every position of this plan starts with (a page encodes many)."""
        return (
            _FORMAT
            + _JSON([self.collection, self.order or "", int(self.descending)])[:-1].encode()
            + b","
        )

    def encode(self, place: Place) -> bytes:
        return self._head + f"{_scalar_json(place.value)},{_scalar_json(place.seq)}]".encode()

    def decode(self, position: bytes, seq_type: type) -> Place:
        """The place a position names; BadPosition if it is not one of this collection's, for
        this order."""
        try:
            if not position.startswith(_FORMAT):
                raise ValueError
            data = json.loads(position[len(_FORMAT) :].decode())
            collection, order, descending, value, seq = data
            if not (
                isinstance(collection, str)
                and isinstance(order, str)
                and descending in (0, 1)
                and kind(value) is not None
                and type(seq) is seq_type
            ):
                raise ValueError
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            raise BadPosition(
                f"a position of {self.collection} is one a page gave, and this one is not "
                "(it does not decode)"
            ) from None
        if collection != self.collection:
            raise BadPosition(
                f"the position was given by a find over {collection}, not {self.collection}"
            )
        if (order or None, bool(descending)) != (self.order, self.descending):
            raise BadPosition(
                f"the position was given for {_describe_order(order or None, bool(descending))}; "
                f"this find is in {self.describe()}: a position holds for the order that gave it"
            )
        return Place(value if self.order is not None else None, seq)


@dataclass(frozen=True)
class Window:
    """A scan's window in the drive's ascending order: from `lo` to `hi`, read backwards or not."""

    lo: Bound | None
    hi: Bound | None
    backwards: bool


def _describe_order(order: str | None, descending: bool) -> str:
    if order is None:
        return "insertion order, " + ("newest first" if descending else "oldest first")
    return f"the order of '{order}', " + ("descending" if descending else "ascending")


def plan(query: Find, indexes: Indexes, collection: str) -> Plan:
    """Check `query` against the collection's indexes and choose how to answer it; NotIndexed,
    BadQuery."""
    for name, count in (("first", query.first), ("last", query.last)):
        if count is not None and count < 0:
            raise BadQuery(f"{name} must not be negative (got {count})")
    sets: dict[str, Values] = {}
    for condition in query.where:
        indexes.check(condition.field, collection)
        values = condition_values(condition)
        earlier = sets.get(condition.field)
        sets[condition.field] = values if earlier is None else _intersect(earlier, values)
    order = query.order_by or None
    if order is not None:
        indexes.check(order, collection)
    keys = None if query.keys is None else tuple(dict.fromkeys(query.keys))
    if keys is not None:
        drive, mode = None, ORDERED
    elif any(not values for values in sets.values()):
        drive, mode = None, NOTHING
    else:
        drive, mode = _choose(order, sets)
    return Plan(collection, indexes.key, order, query.descending, sets, drive, mode, keys)


def _choose(order: str | None, sets: dict[str, Values]) -> tuple[str | None, str]:
    """The index that drives a find, and how it is read (see Plan)."""
    finite = sorted(
        (len(values), name)
        for name, values in sets.items()
        if all(interval.is_point for interval in values)
    )
    if order is not None and order in sets:
        return order, ORDERED
    if order is None and finite:
        return finite[0][1], MERGED  # fewest values: fewest runs to merge
    if finite:
        return finite[0][1], SORTED
    if sets:
        return next(iter(sets)), SORTED
    return order, ORDERED


def matches(sets: dict[str, Values], key: str, key_field: str, document: Document) -> bool:
    """Whether a document meets every condition (on its key for the key field)."""
    for name, values in sets.items():
        found = sort_key(key if name == key_field else document.get(name))
        if not any(interval.contains(found) for interval in values):
            return False
    return True


# -- the paging rules -----------------------------------------------------------------------------

Steps = Generator[Request, Any, Page]


def pages(query: Find, found: Plan, seq_type: type) -> Steps:
    """The requests that answer `query` as planned, one by one; returns the Page. Positions are
    decoded first, so a bad one fails the find before anything is read (with `keys`, paging is
    ignored, positions too)."""
    if found.keys is not None:
        return (yield from _by_keys(query, found))
    lower = None if query.after is None else Bound(found.decode(query.after, seq_type))
    upper = None if query.before is None else Bound(found.decode(query.before, seq_type))
    if found.mode == NOTHING:
        return Page(total=0 if query.total else None)
    if query.last is not None and query.first is None:
        page = yield from _from_the_end(query.last, found, lower, upper)
    else:
        page = yield from _from_the_start(query.first, query.last, found, lower, upper)
    if query.total:
        page.total = yield Count()
    return page


def _by_keys(query: Find, found: Plan) -> Steps:
    fetched: list[tuple[str, Document]] = yield Fetch(found.keys or ())
    documents = [
        document for key, document in fetched if matches(found.sets, key, found.key_field, document)
    ]
    return Page(documents=documents, total=len(documents) if query.total else None)


def _from_the_start(
    first: int | None, last: int | None, found: Plan, lower: Bound | None, upper: Bound | None
) -> Steps:
    limit = None if first is None else first + 1
    rows, at_lower, at_upper = yield from _window(found, lower, upper, False, limit)
    more = first is not None and len(rows) > first
    run = rows if first is None else rows[:first]
    page = run if last is None else run[len(run) - min(last, len(run)) :]
    before_cut: Bound | None
    after_cut: Bound | None
    if page:
        before_cut, after_cut = Bound(page[0].place), Bound(page[-1].place)
    elif run:  # `last: 0`: the empty page sits at the end of the run
        before_cut, after_cut = Bound(run[-1].place, True), Bound(run[-1].place)
    else:  # nothing in the window: the page sits where it starts
        before_cut = None if lower is None else Bound(lower.place, True)
        after_cut = lower
    if len(page) < len(run) or at_lower:
        has_previous = True
    elif lower is None:
        has_previous = False  # the window starts where the order does
    else:
        has_previous = yield from _any_before(before_cut)
    if more or at_upper:
        has_next = True
    elif upper is None:
        has_next = False  # the window was read to the end of the order
    else:
        has_next = yield from _any_after(after_cut)
    return _page(found, page, has_next, has_previous)


def _from_the_end(last: int, found: Plan, lower: Bound | None, upper: Bound | None) -> Steps:
    rows, at_lower, at_upper = yield from _window(found, lower, upper, True, last + 1)
    more = len(rows) > last
    page = rows[:last][::-1]
    before_cut: Bound | None
    after_cut: Bound | None
    if page:
        before_cut, after_cut = Bound(page[0].place), Bound(page[-1].place)
    else:  # the empty page sits where the window ends
        before_cut = upper
        after_cut = None if upper is None else Bound(upper.place, True)
    if more or at_lower:
        has_previous = True
    elif lower is None:
        has_previous = False
    else:
        has_previous = yield from _any_before(before_cut)
    if at_upper:
        has_next = True
    elif upper is None:
        has_next = False  # the window was read to the end of the order
    else:
        has_next = yield from _any_after(after_cut)
    return _page(found, page, has_next, has_previous)


def _window(
    found: Plan, lower: Bound | None, upper: Bound | None, reverse: bool, limit: int | None
) -> Generator[Request, Any, tuple[list[Row], bool, bool]]:
    """The rows strictly between `lower` and `upper`, in the scan's direction (up to `limit`, or
    a few more), and whether the documents at `lower` and at `upper` are still there: the scan
    reads the window's ends too, so that while paging through (the document at `after` is there)
    a document is known to sit before the page without asking."""
    ends = (lower is not None) + (upper is not None)
    near, far = (upper, lower) if reverse else (lower, upper)
    rows: list[Row] = yield Scan(
        None if lower is None else Bound(lower.place, True),
        None if upper is None else Bound(upper.place, True),
        reverse,
        None if limit is None else limit + ends,
    )
    at_near = bool(rows) and near is not None and _at(found, rows[0], near)
    if at_near:
        rows = rows[1:]
    at_far = bool(rows) and far is not None and _at(found, rows[-1], far)
    if at_far:
        rows = rows[:-1]
    return (rows, at_far, at_near) if reverse else (rows, at_near, at_far)


def _at(found: Plan, row: Row, bound: Bound) -> bool:
    return found.place_key(row.place) == found.place_key(bound.place)


def _any_before(cut: Bound | None) -> Generator[Request, Any, bool]:
    """Whether a matching document sorts before `cut` (None: anywhere)."""
    rows: list[Row] = yield Scan(None, cut, True, 1, documents=False)
    return bool(rows)


def _any_after(cut: Bound | None) -> Generator[Request, Any, bool]:
    """Whether a matching document sorts after `cut` (None: anywhere)."""
    rows: list[Row] = yield Scan(cut, None, False, 1, documents=False)
    return bool(rows)


def _page(found: Plan, rows: Sequence[Row], has_next: bool, has_previous: bool) -> Page:
    return Page(
        documents=[row.document for row in rows if row.document is not None],
        positions=[found.encode(row.place) for row in rows],
        has_next=has_next,
        has_previous=has_previous,
    )


def run(steps: Steps, answer: Callable[[Request], Any]) -> Page:
    """Carry the steps out with a synchronous backend."""
    try:
        request = next(steps)
        while True:
            request = steps.send(answer(request))
    except StopIteration as done:
        page: Page = done.value
        return page


async def run_async(steps: Steps, answer: Callable[[Request], Awaitable[Any]]) -> Page:
    """Carry the steps out with an asynchronous backend."""
    try:
        request = next(steps)
        while True:
            request = steps.send(await answer(request))
    except StopIteration as done:
        page: Page = done.value
        return page
