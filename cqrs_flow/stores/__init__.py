"""Store backends behind one small interface."""

from cqrs_flow.stores.base import (
    DocumentStore,
    DuplicateKey,
    InvalidDocument,
    NotFound,
    StaleCommand,
    StoreError,
)
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
