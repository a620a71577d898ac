"""The SQL of the durable store's finds: its indexes, and a statement for each request of
stores/find.py, each reading one named index (INDEXED BY), never the table from end to end.

An indexed field is an expression index on `(<its value>, seq)`, the key field one on `(key, seq)`,
both partial on `seq IS NOT NULL` (live documents only, as `seq_of_...` for the insertion order).
A field's value is `json_extract(doc, '$.field')`, except that booleans become the blobs x'00' and
x'01' (json_extract gives 0 and 1, which would sort and match among numbers) and lists and
messages NULL: SQLite then orders values as the other backends do, null < numbers < strings <
booleans. Row values such as `(expr, seq) > (?, ?)` would read such an index from
its start, so a window is cut into pieces that each are one range of the index (stores/find.py,
Plan.pieces). Layout and costs: docs/ARCHITECTURE.md, "The durable store".
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from cqrs_flow.stores.find import (
    BOOLEAN,
    NOT_NULL,
    NUMBER,
    STRING,
    Bound,
    Indexes,
    Interval,
    Piece,
    Plan,
    Values,
    Window,
)

__all__ = [
    "count_sql",
    "counts_schema",
    "expression",
    "fetch_sql",
    "index_name",
    "index_schema",
    "piece_sql",
    "pieces_sql",
    "sorted_sql",
]

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BELOW: dict[tuple[Any, ...], tuple[str, Any]] = {  # a bound between kinds, as SQLite orders them
    (NUMBER,): (">=", float("-inf")),  # from the least number
    (NUMBER + 0.5,): ("<", ""),  # below the least string
    (STRING,): (">=", ""),
    (STRING + 0.5,): ("<", b""),  # below the least blob (booleans): every string
    (BOOLEAN,): (">=", b""),
    (BOOLEAN + 0.5,): ("<", b"\x02"),
}
FETCH_CHUNK = 500  # keys per statement (SQLite limits the parameters of one)


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_name(collection: str) -> str:
    return "docs_" + collection


def index_name(collection: str, field: str | None, indexes: Indexes) -> str:
    """The quoted name of the index that orders by `field` (None: insertion order)."""
    if field is None:
        return quoted("seq_of_" + collection)
    if field == indexes.key:
        return quoted("keys_of_" + collection)
    return quoted(f"{table_name(collection)}.{field}")  # '.' is in no collection's name


def expression(field: str | None, indexes: Indexes) -> str:
    """The SQL of a field's value in a row, as its index has it (the same text, or SQLite would
    not know the index for it)."""
    if field is None:
        return "seq"
    if field == indexes.key:
        return "key"
    path = "$." + field if _PLAIN.fullmatch(field) else '$."' + field.replace('"', '\\"') + '"'
    at = "doc, '" + path.replace("'", "''") + "'"
    return (
        f"CASE json_type({at}) WHEN 'true' THEN x'01' WHEN 'false' THEN x'00'"
        f" WHEN 'object' THEN NULL WHEN 'array' THEN NULL ELSE json_extract({at}) END"
    )


def sql_value(value: Any) -> Any:
    """A value as the index expression holds it (a boolean as its blob)."""
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    return value


# -- the schema ------------------------------------------------------------------------------------


def index_schema(connection: sqlite3.Connection, collection: str, indexes: Indexes) -> list[str]:
    """Create the indexes the collection's finds need (IF NOT EXISTS: an index added to the
    topology is built at the next start), and drop those of fields no longer indexed. Returns
    the fields whose index was built now."""
    table = quoted(table_name(collection))
    live = "WHERE seq IS NOT NULL"
    connection.execute(
        f"CREATE INDEX IF NOT EXISTS {index_name(collection, indexes.key, indexes)}"
        f" ON {table} (key, seq) {live}"
    )
    prefix = table_name(collection) + "."
    present = {
        row[1][len(prefix) :]
        for row in connection.execute(f"PRAGMA index_list({table})")
        if row[1].startswith(prefix)
    }
    for gone in sorted(present - set(indexes.secondary)):
        connection.execute(f"DROP INDEX {quoted(prefix + gone)}")
    built = [name for name in indexes.secondary if name not in present]
    for name in indexes.secondary:
        connection.execute(
            f"CREATE INDEX IF NOT EXISTS {index_name(collection, name, indexes)}"
            f" ON {table} ({expression(name, indexes)}, seq) {live}"
        )
    return built


def counts_schema(connection: sqlite3.Connection, collection: str) -> None:
    """The count of live documents, kept by triggers in the transaction of every change (so a
    find's total without conditions reads one row), and made when missing."""
    table = quoted(table_name(collection))
    name = "'" + collection.replace("'", "''") + "'"
    connection.execute(
        "CREATE TABLE IF NOT EXISTS counts (collection TEXT PRIMARY KEY, live INTEGER NOT NULL)"
    )
    for trigger, event, when, amount in (
        ("in", "INSERT", "new.seq IS NOT NULL", "1"),
        ("out", "DELETE", "old.seq IS NOT NULL", "-1"),
        (
            "change",
            "UPDATE OF seq",
            "(old.seq IS NULL) <> (new.seq IS NULL)",
            "(CASE WHEN new.seq IS NULL THEN -1 ELSE 1 END)",
        ),
    ):
        connection.execute(
            f"CREATE TRIGGER IF NOT EXISTS {quoted(f'count_{trigger}_{collection}')}"
            f" AFTER {event} ON {table} WHEN {when} BEGIN"
            f" UPDATE counts SET live = live + {amount} WHERE collection = {name}; END"
        )
    connection.execute(
        f"INSERT OR IGNORE INTO counts SELECT {name}, count(*) FROM {table} WHERE seq IS NOT NULL"
    )


# -- conditions ------------------------------------------------------------------------------------


class Sql:
    """WHERE terms and their parameters, built up."""

    def __init__(self) -> None:
        self.terms: list[str] = ["seq IS NOT NULL"]
        self.params: list[Any] = []

    def add(self, term: str, *params: Any) -> None:
        self.terms.append(term)
        self.params.extend(params)

    @property
    def where(self) -> str:
        return " AND ".join(self.terms)


def _values(sql: Sql, expr: str, values: Values) -> None:
    """Terms for `expr` taking one of `values` (points, or one interval)."""
    if all(interval.is_point for interval in values):
        points = [_param(interval.lo) for interval in values]
        if None in points:
            sql.add(f"{expr} IS NULL")
        else:
            sql.add(f"{expr} IN ({', '.join('?' * len(points))})", *points)
        return
    (interval,) = values
    _interval(sql, expr, interval)


def _interval(sql: Sql, expr: str, interval: Interval) -> None:
    if interval.is_point:
        value = _param(interval.lo)
        if value is None:
            sql.add(f"{expr} IS NULL")
        else:
            sql.add(f"{expr} = ?", value)
        return
    if interval.lo is not None:
        if interval.lo == NOT_NULL:
            sql.add(f"{expr} IS NOT NULL")
        elif len(interval.lo) == 1:
            op, value = _BELOW[interval.lo]
            sql.add(f"{expr} {op} ?", value)
        else:
            assert interval.lo[1] is not None, "null is a piece of its own"
            sql.add(f"{expr} {'>=' if interval.lo_in else '>'} ?", _param(interval.lo))
    if interval.hi is not None:
        if len(interval.hi) == 1:
            op, value = _BELOW[interval.hi]
            sql.add(f"{expr} {op} ?", value)
        else:
            sql.add(f"{expr} {'<=' if interval.hi_in else '<'} ?", _param(interval.hi))


def _param(key: tuple[Any, ...] | None) -> Any:
    """A key's value as the index holds it."""
    assert key is not None and len(key) == 2
    return sql_value(key[1])


def _filters(sql: Sql, found: Plan, indexes: Indexes) -> None:
    for name, values in found.filters.items():
        _values(sql, expression(name, indexes), values)


def _limit(limit: int | None) -> int:
    return -1 if limit is None else limit


# -- statements ------------------------------------------------------------------------------------


def piece_sql(
    found: Plan,
    indexes: Indexes,
    piece: Piece,
    backwards: bool,
    limit: int | None,
    documents: bool,
) -> tuple[str, list[Any]]:
    """The statement reading one piece of the drive's index, in its order."""
    sql = Sql()
    drive = expression(found.drive, indexes)
    if piece.values is not None:
        _interval(sql, drive, piece.values)
    if piece.seq_lo is not None:
        sql.add(f"seq {'>=' if piece.seq_lo[1] else '>'} ?", piece.seq_lo[0])
    if piece.seq_hi is not None:
        sql.add(f"seq {'<=' if piece.seq_hi[1] else '<'} ?", piece.seq_hi[0])
    _filters(sql, found, indexes)
    direction = " DESC" if backwards else ""
    by_value = piece.values is not None and not piece.values.is_point
    order = (f"{drive}{direction}, " if by_value else "") + f"seq{direction}"
    return _select(found, indexes, sql, order, limit, documents)


def pieces_sql(
    found: Plan,
    indexes: Indexes,
    pieces: Sequence[Piece],
    backwards: bool,
    limit: int | None,
    documents: bool,
    merged: bool = False,
) -> tuple[str, list[Any]]:
    """One statement reading several pieces, in the order given: each piece's statement (with
    the whole limit), one after the other (UNION ALL, which SQLite runs arm after arm, stopping
    at the outer LIMIT once a page is full). One statement rather than one per piece: each
    costs its own round through the sqlite3 module, more than reading 20 entries of an index.
    `merged`: runs the caller merges, each read up to the limit (no outer LIMIT)."""
    statements = [piece_sql(found, indexes, p, backwards, limit, documents) for p in pieces]
    if len(statements) == 1:
        return statements[0]
    text = " UNION ALL ".join(f"SELECT * FROM ({statement})" for statement, _ in statements)
    params = [param for _, given in statements for param in given]
    if merged:
        return text, params
    return f"{text} LIMIT ?", [*params, _limit(limit)]


def sorted_sql(
    found: Plan,
    indexes: Indexes,
    window: Window,
    limit: int | None,
    documents: bool,
) -> tuple[str, list[Any]]:
    """The statement reading the drive's matches within the window of another order, sorted."""
    sql = Sql()
    _values(sql, expression(found.drive, indexes), found.sets[found.drive or ""])
    _filters(sql, found, indexes)
    order = expression(found.order, indexes)
    if window.lo is not None:
        _after(sql, found, order, window.lo)
    if window.hi is not None:
        _before(sql, found, order, window.hi)
    direction = " DESC" if window.backwards else ""
    by = (f"{order}{direction}, " if found.order is not None else "") + f"seq{direction}"
    return _select(found, indexes, sql, by, limit, documents)


def _after(sql: Sql, found: Plan, order: str, bound: Bound) -> None:
    """The rows at or after `bound` in the ascending order (a filter: the drive is elsewhere)."""
    seq = f"seq {'>=' if bound.inclusive else '>'} ?"
    value = sql_value(bound.place.value)
    if found.order is None:
        sql.add(seq, bound.place.seq)
    elif value is None:
        sql.add(f"({order} IS NOT NULL OR {seq})", bound.place.seq)
    else:
        sql.add(f"({order} > ? OR ({order} = ? AND {seq}))", value, value, bound.place.seq)


def _before(sql: Sql, found: Plan, order: str, bound: Bound) -> None:
    seq = f"seq {'<=' if bound.inclusive else '<'} ?"
    value = sql_value(bound.place.value)
    if found.order is None:
        sql.add(seq, bound.place.seq)
    elif value is None:
        sql.add(f"({order} IS NULL AND {seq})", bound.place.seq)
    else:
        sql.add(
            f"({order} IS NULL OR {order} < ? OR ({order} = ? AND {seq}))",
            value,
            value,
            bound.place.seq,
        )


def _select(
    found: Plan, indexes: Indexes, sql: Sql, order: str, limit: int | None, documents: bool
) -> tuple[str, list[Any]]:
    table = quoted(table_name(found.collection))
    index = index_name(found.collection, found.drive, indexes)
    text = (
        f"SELECT key, seq, {'doc' if documents else 'NULL'} FROM {table} INDEXED BY {index}"
        f" WHERE {sql.where} ORDER BY {order} LIMIT ?"
    )
    return text, [*sql.params, _limit(limit)]


def count_sql(found: Plan, indexes: Indexes) -> tuple[str, list[Any]]:
    """The statement counting the plan's matches (its drive's, checked against the others)."""
    if not found.sets:
        return "SELECT live FROM counts WHERE collection = ?", [found.collection]
    sql = Sql()
    _values(sql, expression(found.drive, indexes), found.sets[found.drive or ""])
    _filters(sql, found, indexes)
    table = quoted(table_name(found.collection))
    index = index_name(found.collection, found.drive, indexes)
    return f"SELECT count(*) FROM {table} INDEXED BY {index} WHERE {sql.where}", sql.params


def fetch_sql(collection: str, keys: Sequence[str]) -> tuple[str, list[Any]]:
    """The statement reading the live documents of some keys (at most FETCH_CHUNK)."""
    table = quoted(table_name(collection))
    marks = ", ".join("?" * len(keys))
    return (
        f"SELECT key, doc FROM {table} WHERE key IN ({marks}) AND seq IS NOT NULL",
        list(keys),
    )
