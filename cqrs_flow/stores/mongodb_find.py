"""The MongoDB documents of the MongoDB backend's finds: its indexes, and for each request of
stores/find.py the filter, sort, hint and limit of one `find` (or `count_documents`).

Pure functions of the plan, so that what is asked of MongoDB is tested without a server. An
indexed field is a compound index `(d.<field>, _seq)` and the key one `(_id, _seq)`, both partial
on live documents (`_seq` exists), as `live_by_seq` orders `list`. MongoDB compares values of one
type only (`{$gt: 5}` matches no string), which is the interface's rule already. Layout and
costs: docs/ARCHITECTURE.md, "The MongoDB store".
"""

from __future__ import annotations

from typing import Any

from cqrs_flow.stores.find import (
    BOOLEAN,
    NOT_NULL,
    NUMBER,
    SORTED,
    STRING,
    Bound,
    Indexes,
    Interval,
    Piece,
    Plan,
    Scan,
    Values,
    Window,
)

__all__ = [
    "KEY_INDEX",
    "LIVE",
    "SEQ_INDEX",
    "count_query",
    "index_name",
    "index_specs",
    "path",
    "scan_query",
]

LIVE = {"_seq": {"$exists": True}}
SEQ_INDEX = "live_by_seq"
KEY_INDEX = "live_by_id"
FIELD_INDEX = "by_"  # + the field's name
_TYPES = {NUMBER: "number", STRING: "string", BOOLEAN: "bool"}


def path(name: str | None, indexes: Indexes) -> str:
    """Where a field's value is in a stored MongoDB document."""
    if name is None:
        return "_seq"
    return "_id" if name == indexes.key else "d." + name


def index_name(name: str | None, indexes: Indexes) -> str:
    if name is None:
        return SEQ_INDEX
    return KEY_INDEX if name == indexes.key else FIELD_INDEX + name


def index_specs(indexes: Indexes) -> list[tuple[list[tuple[str, int]], dict[str, Any]]]:
    """(keys, options) of every index the collection's finds use, insertion order first."""
    specs = [([("_seq", 1)], {"name": SEQ_INDEX, "partialFilterExpression": LIVE})]
    for name in indexes.names:
        specs.append(
            (
                [(path(name, indexes), 1), ("_seq", 1)],
                {"name": index_name(name, indexes), "partialFilterExpression": LIVE},
            )
        )
    return specs


def is_field_index(name: str) -> bool:
    """Whether an index of the collection is one of a field's (so dropped when the field is no
    longer indexed)."""
    return name.startswith(FIELD_INDEX)


# -- conditions ------------------------------------------------------------------------------------


def values_filter(values: Values) -> Any:
    """What a field's value must be to be one of `values` (points, or one interval)."""
    if all(interval.is_point for interval in values):
        points = [_value(interval.lo) for interval in values]
        return points[0] if len(points) == 1 else {"$in": points}
    (interval,) = values
    return interval_filter(interval)


def interval_filter(interval: Interval) -> Any:
    if interval.is_point:
        return _value(interval.lo)
    ops: dict[str, Any] = {}
    if interval.lo is not None and len(interval.lo) == 2:
        ops["$gte" if interval.lo_in else "$gt"] = _value(interval.lo)
    if interval.hi is not None and len(interval.hi) == 2:
        ops["$lte" if interval.hi_in else "$lt"] = _value(interval.hi)
    if ops:  # a comparison matches values of its own type only: the kind's bounds go without
        return ops
    if interval.lo == NOT_NULL:
        return {"$ne": None}
    assert interval.lo is not None and len(interval.lo) == 1, "an interval has a bound"
    return {"$type": _TYPES[int(interval.lo[0])]}  # from a kind's first value to its last


def _value(key: tuple[Any, ...] | None) -> Any:
    assert key is not None and len(key) == 2
    return key[1]


def _seq(op: str, bound: tuple[Any, bool]) -> dict[str, Any]:
    seq, included = bound
    return {op + ("e" if included else ""): seq}


def piece_filter(found: Plan, indexes: Indexes, piece: Piece) -> dict[str, Any]:
    """The entries of one piece of the drive's index."""
    where: dict[str, Any] = {}
    if piece.values is not None:
        where[path(found.drive, indexes)] = interval_filter(piece.values)
    seqs: dict[str, Any] = {}
    if piece.seq_lo is not None:
        seqs.update(_seq("$gt", piece.seq_lo))
    if piece.seq_hi is not None:
        seqs.update(_seq("$lt", piece.seq_hi))
    if seqs:
        where["_seq"] = seqs
    return where


def window_filter(found: Plan, indexes: Indexes, window: Window) -> list[dict[str, Any]]:
    """The documents within a window of the order, as filters (the drive is another index)."""
    clauses = []
    if window.lo is not None:
        clauses.append(_side(found, indexes, window.lo, "$gt"))
    if window.hi is not None:
        clauses.append(_side(found, indexes, window.hi, "$lt"))
    return clauses


def _side(found: Plan, indexes: Indexes, bound: Bound, op: str) -> dict[str, Any]:
    seq = {"_seq": _seq(op, (bound.place.seq, bound.inclusive))}
    if found.order is None:
        return seq
    field, value = path(found.order, indexes), bound.place.value
    if value is None:
        if op == "$gt":
            return {"$or": [{field: {"$ne": None}}, {field: None, **seq}]}
        return {field: None, **seq}
    beyond = [{field: {op: value}}, {field: value, **seq}]
    return {"$or": beyond if op == "$gt" else [{field: None}, *beyond]}


def _filters(found: Plan, indexes: Indexes) -> list[dict[str, Any]]:
    return [{path(name, indexes): values_filter(values)} for name, values in found.filters.items()]


def _and(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return {"$and": [LIVE, *clauses]}


# -- queries ---------------------------------------------------------------------------------------


def scan_query(found: Plan, indexes: Indexes, scan: Scan) -> dict[str, Any] | None:
    """The keyword arguments of the one `find` answering a scan (filter, projection, sort, limit,
    hint); None when the window holds nothing."""
    window = found.window(scan.lower, scan.upper, scan.reverse)
    direction = -1 if window.backwards else 1
    clauses = _filters(found, indexes)
    if found.mode == SORTED:
        drive = found.sets[found.drive or ""]
        clauses = [{path(found.drive, indexes): values_filter(drive)}, *clauses]
        clauses += window_filter(found, indexes, window)
        order = found.order
    else:
        pieces = [piece_filter(found, indexes, piece) for piece in found.pieces(window)]
        if not pieces:
            return None
        clauses.insert(0, pieces[0] if len(pieces) == 1 else {"$or": pieces})
        order = found.drive if found.order is not None else None
    sort = [("_seq", direction)]
    if order is not None:
        sort.insert(0, (path(order, indexes), direction))
    return {
        "filter": _and(clauses),
        "projection": {"d": 1, "_seq": 1} if scan.documents else {"_seq": 1},
        "sort": sort,
        "limit": 0 if scan.limit is None else scan.limit,  # 0: no limit, to MongoDB
        "hint": index_name(found.drive, indexes),
    }


def count_query(found: Plan, indexes: Indexes) -> dict[str, Any]:
    """The keyword arguments of the `count_documents` counting the plan's matches."""
    clauses = _filters(found, indexes)
    if found.drive is not None and found.drive in found.sets:
        clauses.insert(0, {path(found.drive, indexes): values_filter(found.sets[found.drive])})
    return {"filter": _and(clauses), "hint": index_name(found.drive, indexes)}
