"""The store node's memory of the commands it applied and what it answered each."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["AppliedCommands"]


class AppliedCommands:
    """The store's memory of the command ids it applied, with the response each got: a command
    delivered again (after a writer restarted, say) is answered the same and not applied twice.
    Kept for the last `capacity` commands, in memory: a store restart forgets them, and then
    the keys' last command ids (kept by the backend, on disk for a durable store) still keep the
    command from being applied twice; it is answered with its key only."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._responses: OrderedDict[str, bytes] = OrderedDict()
        self._capacity = capacity

    def get(self, command_id: str) -> bytes | None:
        return self._responses.get(command_id)

    def add(self, command_id: str, response: bytes) -> None:
        self._responses[command_id] = response
        if len(self._responses) > self._capacity:
            self._responses.popitem(last=False)
