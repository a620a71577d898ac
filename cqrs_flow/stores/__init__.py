"""Store backends behind one small interface."""

from cqrs_flow.stores.base import DocumentStore, DuplicateKey, NotFound, StoreError
from cqrs_flow.stores.memory import MemoryStore

__all__ = ["DocumentStore", "DuplicateKey", "MemoryStore", "NotFound", "StoreError"]
