"""What became of each command, as the gateway knows it: the book behind commandStatus."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cqrs_flow.stores.database import Database
from cqrs_flow.stores.retained import Retained
from cqrs_flow.topology.model import RecordRetention

__all__ = ["STATUS_SDL", "SUBSCRIPTION_SDL", "TABLE", "CommandBook"]

TABLE = "statuses"  # the command book's table in the outbox's database
# One encoder for every entry: json.dumps with separators makes a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode

# Added to every gateway's schema (unless it defines commandStatus itself).
STATUS_SDL = """
"What became of a command: QUEUED until a writer reports it APPLIED or FAILED."
enum CommandState {{ QUEUED APPLIED FAILED }}

type CommandStatus {{
  "The command id a mutation answered with."
  id: String!
  state: CommandState!
  "The command's name in the topology."
  command: String
  "The key of the entity the command is about."
  key: String
  "Why it failed."
  reason: String
  "Who asked for it: the subject (sub) of the caller's token; null without one."
  subject: String
}}

extend type {query_type} {{
  "What became of a command, by the command id its mutation answered with; null if unknown."
  commandStatus(id: String!): CommandStatus
}}
"""

# Added when the schema lets the gateway define the Subscription type.
SUBSCRIPTION_SDL = """
{keyword} type {subscription_type} {{
  "Notifies once, when a writer reports the command APPLIED or FAILED; null if it is unknown."
  commandSettled(id: String!): CommandStatus
}}
"""


class CommandBook:
    """The commands this gateway queued or heard about, by id, kept as `retention` says: in
    memory, or with the outbox's database also in a table of it (`statuses`), so that a restarted
    gateway still answers commandStatus for what it accepted before."""

    def __init__(self, retention: RecordRetention | None = None, database: Database | None = None):
        self._records = Retained.kept_as(retention, database, TABLE)
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        # Whether an entry with a subject was ever put: until then, a report without a subject
        # has none to take from the queued entry, and that entry is not read (and decoded).
        self._subjects = False

    def __len__(self) -> int:
        """The entries in memory."""
        return len(self._records)

    async def settled(self, command_id: str) -> dict[str, Any] | None:
        """The command's entry once it is APPLIED or FAILED; None at once if it is unknown."""
        entry = await self.lookup(command_id)
        if entry is None or entry["state"] != "QUEUED":
            return entry
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(command_id, []).append(waiter)
        try:
            return await waiter
        finally:
            waiters = self._waiters.get(command_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(command_id, None)

    def queued(self, command_id: str, command: str, key: str | None, subject: str = "") -> None:
        self._put(
            {
                "id": command_id,
                "state": "QUEUED",
                "command": command,
                "key": key,
                "reason": None,
                "subject": subject or None,
            }
        )

    def heard(self, payload: bytes) -> list[str] | None:
        """Take a writer's status message (a JSON list of reports, or one report); the ids of the
        commands it settles, or None (and nothing changes) if it is no status message."""
        try:
            reports = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
        reports = reports if isinstance(reports, list) else [reports]
        if not reports or not all(
            isinstance(r, dict)
            and isinstance(r.get("id"), str)
            and r.get("state") in ("APPLIED", "FAILED")
            for r in reports
        ):
            return None
        for report in reports:
            # who asked: as the writer read it from the command, else as this gateway knew it
            subject = report.get("subject")
            if not subject and self._subjects:
                subject = (self.get(report["id"]) or {}).get("subject")
            entry = {
                "id": report["id"],
                "state": report["state"],
                "command": report.get("command"),
                "key": report.get("key") or None,
                "reason": report.get("reason") or None,
                "subject": subject or None,
            }
            self._put(entry)
            for waiter in self._waiters.pop(entry["id"], []):
                if not waiter.done():
                    waiter.set_result(entry)
        return [r["id"] for r in reports]

    def get(self, command_id: str) -> dict[str, Any] | None:
        """The entry if it is in memory (the most recent ones are)."""
        found = self._records.cached(command_id)
        return None if found is None else _entry(found)

    async def lookup(self, command_id: str) -> dict[str, Any] | None:
        """The entry, from memory or the database; None if unknown (or no longer kept)."""
        found = await self._records.get(command_id)
        return None if found is None else _entry(found)

    def _put(self, entry: dict[str, Any]) -> None:
        if entry["subject"]:
            self._subjects = True
        self._records.put(entry["id"], _encode(entry).encode())


def _entry(value: bytes) -> dict[str, Any] | None:
    entry = json.loads(value)
    return entry if isinstance(entry, dict) else None
