"""The interface every store backend implements: keyed documents in one collection."""

from __future__ import annotations

import asyncio
import builtins
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BadPosition",
    "BadQuery",
    "Condition",
    "DocumentStore",
    "DuplicateKey",
    "Find",
    "InvalidDocument",
    "NotFound",
    "NotIndexed",
    "Page",
    "StaleCommand",
    "StoreError",
]

Document = dict[str, Any]


class StoreError(Exception):
    """Base of the errors a backend raises for a request it cannot carry out."""


class NotFound(StoreError):
    """No document has the key."""


class DuplicateKey(StoreError):
    """A document with the key exists already."""


class InvalidDocument(StoreError):
    """A document the backend cannot store as it is (trying again will not help)."""


class StaleCommand(StoreError):
    """The key's last command is this very command (a redelivery) or a newer one: the write is
    not made (see cqrs_flow.contracts.ordering)."""

    def __init__(self, key: str, last: str) -> None:
        super().__init__(key)
        self.key, self.last = key, last


class BadQuery(StoreError):
    """A find the backend cannot carry out as asked (a condition it does not know, a prefix on
    something else than a string, a negative `first`): the caller's error, whatever the data.
    NotIndexed and BadPosition are kinds of it."""


class NotIndexed(BadQuery):
    """A find that filters or orders on a field that is not indexed; the message names the
    indexed ones (a find is never a full scan in disguise)."""


class BadPosition(BadQuery):
    """An `after` or `before` position this collection did not give for this order."""


@dataclass(frozen=True)
class Condition:
    """`field op values`: op is one of spec.FILTER_OPS (eq, in, gt, gte, lt, lte, prefix); `values`
    holds one value, or several for `in`. Values compare as the documents hold them (to_document):
    numbers, strings, booleans, enums by name.

    A value compares with values of its own kind only (a number with numbers, a string with
    strings, a boolean with booleans): `year gt 1990` matches no document whose year is a
    string, and a document without the field matches no condition on it. Strings compare by
    code point (the order of their UTF-8 bytes), as SQLite and MongoDB compare them; `prefix`
    takes a string and matches the strings that start with it."""

    field: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Find:
    """What a find asks: the documents with `keys` (in the order asked, each once; missing keys
    left out; paging ignored, positions not given; `where` still applies), or those matching
    every condition of `where`, in the order of `order_by` (an indexed field or the entity's key,
    ties broken by insertion order; None: insertion order, oldest first), or the reverse with
    `descending`, paged as a Relay connection.

    Paging, as the Relay specification reads: the documents strictly after the position `after`
    and strictly before `before` (positions a page of the same order gave), of which `first`
    takes the first N and `last` the last N (both: `first`, then `last` of those). Neither: all
    of them. Pages are keyset pages, never offsets: a position names a place in the order
    (order value, insertion), so a page after it holds whatever is after that place now,
    whether or not its own document is still there.

    `total`: also count every document `where` matches (see Page).
    """

    keys: tuple[str, ...] | None = None
    where: tuple[Condition, ...] = ()
    order_by: str | None = None
    descending: bool = False
    first: int | None = None
    after: bytes | None = None
    last: int | None = None
    before: bytes | None = None
    total: bool = False


@dataclass
class Page:
    """A find's answer: the documents in order, each with its position (for after/before, stable
    while documents come and go), and the total when asked.

    `has_next` and `has_previous` are exact, and not limited by after/before: whether a document
    matching `where` exists after the page's last document (before its first), anywhere in the
    order. So with `after`, has_previous says whether anything matches before that position
    (Relay's "hasPreviousPage is true if a document exists before `after`"), and with `before`,
    has_next whether anything matches from that position on. An empty page sits where its
    window starts (at `after`), or where it ends (at `before`) when only `last` was given.
    """

    documents: builtins.list[Document] = field(default_factory=builtins.list)
    positions: builtins.list[bytes] = field(default_factory=builtins.list)
    has_next: bool = False
    has_previous: bool = False
    total: int | None = None


class DocumentStore(ABC):
    """Documents keyed by a string; async so that network backends fit the same interface.

    Every write may name the `command` (its command id) it carries out. The backend keeps each
    key's last command, after a delete too (a tombstone), and makes a write only if its command
    supersedes the key's last one (cqrs_flow.contracts.ordering.supersedes), checking and writing in
    one step: single-key writes raise StaleCommand otherwise, bulk writes leave such keys out. A
    backend shared by several store processes must make that step atomic where the data is.
    """

    @abstractmethod
    async def insert(self, key: str, document: Document, command: str | None = None) -> None:
        """Store a new document; DuplicateKey if the key is taken."""

    @abstractmethod
    async def update(self, key: str, fields: Document, command: str | None = None) -> Document:
        """Set `fields` on the document and return it; NotFound if there is none."""

    @abstractmethod
    async def delete(self, key: str, command: str | None = None) -> None:
        """Remove the document; NotFound if there is none."""

    @abstractmethod
    async def insert_many(self, documents: dict[str, Document], command: str | None = None) -> int:
        """Store every new document (key -> document); DuplicateKey, storing none, if a key is
        taken."""

    @abstractmethod
    async def delete_many(self, keys: list[str], command: str | None = None) -> int:
        """Remove the documents that exist; return how many were removed. With a command, every
        key in `keys` it supersedes gets it as its last command, whether a document was there or
        not."""

    @abstractmethod
    async def get(self, key: str) -> Document:
        """The document; NotFound if there is none."""

    @abstractmethod
    async def list(self, count: int) -> list[Document]:
        """Up to `count` documents, oldest first."""

    @abstractmethod
    async def find(self, query: Find) -> Page:
        """The page `query` asks for (see Find and Page): NotIndexed for a field that is not
        indexed, BadPosition for a position this collection did not give for this order,
        BadQuery for any other condition or count that means nothing."""

    async def find_many(self, queries: builtins.list[Find]) -> builtins.list[Page]:
        """A page per query, in order (a backend may answer them all from one snapshot)."""
        return [await self.find(query) for query in queries]

    async def find_at(self, queries: builtins.list[Find]) -> tuple[builtins.list[Page], int]:
        """find_many, and the change log's position the pages were read at: they show every
        change up to it (0: the backend keeps no log). A backend that cannot read both from one
        snapshot reads the position first, so that the pages may show changes after it, but
        never miss one before: a follower going on from it sees some changes twice, none never."""
        return await self.find_many(queries), 0

    async def wait_failure(self) -> None:
        """Raise the error that leaves the backend unable to serve (its disk failed, say);
        never returns otherwise. The store node runs it in the background and ends with it."""
        await asyncio.Event().wait()

    async def close(self) -> None:  # noqa: B027 (optional: a backend may hold nothing)
        """Release what the backend holds."""
