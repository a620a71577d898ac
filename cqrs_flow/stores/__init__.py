"""Store backends behind one small interface.

The backends are imported when first asked for (`cqrs_flow.stores.MemoryStore`, or their own
modules): a node that only needs the interface or the outbox's database (a gateway, a writer)
does not pay for the embedded store's mongomock and pymongo at start-up."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cqrs_flow.stores.base import (
    DocumentStore,
    DuplicateKey,
    InvalidDocument,
    NotFound,
    StaleCommand,
    StoreError,
)

if TYPE_CHECKING:
    from cqrs_flow.stores.memory import MemoryStore
    from cqrs_flow.stores.sqlite import SqliteStore

__all__ = [
    "DocumentStore",
    "DuplicateKey",
    "InvalidDocument",
    "MemoryStore",
    "NotFound",
    "SqliteStore",
    "StaleCommand",
    "StoreError",
]

_BACKENDS = {"MemoryStore": "cqrs_flow.stores.memory", "SqliteStore": "cqrs_flow.stores.sqlite"}


def __getattr__(name: str) -> Any:
    module = _BACKENDS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
