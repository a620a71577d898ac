"""The interface every store backend implements: keyed documents in one collection."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

__all__ = [
    "DocumentStore",
    "DuplicateKey",
    "InvalidDocument",
    "NotFound",
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

    async def wait_failure(self) -> None:
        """Raise the error that leaves the backend unable to serve (its disk failed, say);
        never returns otherwise. The store node runs it in the background and ends with it."""
        await asyncio.Event().wait()

    async def close(self) -> None:  # noqa: B027 (optional: a backend may hold nothing)
        """Release what the backend holds."""
