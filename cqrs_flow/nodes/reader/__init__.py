"""The reader node: its service (`service.py`) and its own read model (`model.py`)."""

from __future__ import annotations

from cqrs_flow.nodes.reader.service import ReaderService

__all__ = ["ReaderService"]
