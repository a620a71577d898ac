"""The change log service on a store's read side (cqrs_flow.Changes: Follow, Info): the node's
ChangeLog read from a position, its changes encoded as Change messages with each document as its
entity's message.

Which collection is which entity's is the node's to say (`Collections`): a read model's live
generation is its entity's, a generation being built by a replay is no entity's (its changes are
in the log, and left out of what followers get).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

from google.protobuf.message import Message

from cqrs_flow.protobuf.conversions import from_document
from cqrs_flow.stores.log import Change, ChangeLog
from cqrs_flow.stores.operations import InvalidRequest

__all__ = ["FOLLOW_BATCH", "Collections", "follow", "follow_batches", "rfc3339"]

FOLLOW_BATCH = 500  # changes read from the log at once
BATCH_BYTES = 1024 * 1024  # a ChangeBatch is cut before it grows past this (gRPC takes 4 MiB)
WAIT = 5.0  # longest a caught-up follower waits before looking at the log again


def rfc3339(at: float) -> str:
    """A log time (seconds since the epoch) as RFC 3339, in UTC, to the millisecond."""
    stamp = datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class Collections:
    """Collection -> entity, for the entities a store holds; a read model's entry follows its
    live generation (`move`)."""

    def __init__(self, entities: dict[str, str]) -> None:
        self.entity_of = dict(entities)  # collection -> entity name
        self.collection_of = {entity: c for c, entity in entities.items()}

    def move(self, entity: str, collection: str) -> None:
        del self.entity_of[self.collection_of[entity]]
        self.entity_of[collection] = entity
        self.collection_of[entity] = collection

    def of(self, entities: builtins.list[str]) -> set[str]:
        """The collections of `entities` (none: all); InvalidRequest naming an unknown one."""
        for entity in entities:
            if entity not in self.collection_of:
                raise InvalidRequest(
                    f"this store holds no entity '{entity}'; it holds "
                    f"{', '.join(self.collection_of)}"
                )
        return {self.collection_of[e] for e in entities or self.collection_of}


def encode(change: Change, entity: str, document_class: type[Message], message_class: Any) -> Any:
    """The Change message (of `message_class`) of a change to a document of `entity`."""
    message = message_class(
        position=change.position,
        entity=entity,
        key=change.key,
        op=change.op,
        command_id=change.command or "",
        at=rfc3339(change.at),
        subject=change.subject or "",
    )
    if change.document is not None:
        message.document = from_document(change.document, document_class).SerializeToString()
    if change.previous is not None:
        message.previous = from_document(change.previous, document_class).SerializeToString()
    return message


async def follow(
    log: ChangeLog,
    request: Any,
    collections: Collections,
    document_class: Callable[[str], type[Message]],
    message_class: Any,
) -> AsyncIterator[Message]:
    """The Change messages a FollowRequest asks for: every change after `request.after` of its
    entities (none: all), in order; with `request.wait`, then each new one as it is made, for
    as long as the caller stays. Raises InvalidRequest for an unknown entity, and what the log
    raises (Trimmed, Ahead: the position is not in the log; StoreError)."""
    async for changes, _ in _batches(log, request, collections, document_class, message_class):
        for change in changes:
            yield change


async def follow_batches(
    log: ChangeLog,
    request: Any,
    collections: Collections,
    document_class: Callable[[str], type[Message]],
    message_class: Any,
    batch_class: Any,
) -> AsyncIterator[Message]:
    """What `follow` sends, as ChangeBatch messages: a batch per read of the log that found
    changes of the entities asked for, cut into several where its documents are large."""
    async for changes, through in _batches(
        log, request, collections, document_class, message_class
    ):
        batch, size = batch_class(), 0
        for change in changes:
            if size and size + change.ByteSize() > BATCH_BYTES:
                batch.through = batch.changes[-1].position
                yield batch
                batch, size = batch_class(), 0
            batch.changes.append(change)
            size += change.ByteSize()
        if batch.changes:
            batch.through = through
            yield batch


async def _batches(
    log: ChangeLog,
    request: Any,
    collections: Collections,
    document_class: Callable[[str], type[Message]],
    message_class: Any,
) -> AsyncIterator[tuple[builtins.list[Any], int]]:
    """(the Change messages of one read of the log, the last position it looked at)."""
    entities = builtins.list(request.entities)
    collections.of(entities)  # an unknown entity is refused before anything is sent
    after = request.after
    while True:
        # asked each time: a replay's switch moves an entity to another collection
        batch = await log.read(after, FOLLOW_BATCH, collections.of(entities))
        changes = []
        for change in batch.changes:
            entity = collections.entity_of.get(change.collection)
            if entity is not None:  # else: a generation a replay builds, or a dropped one
                changes.append(encode(change, entity, document_class(entity), message_class))
        yield changes, batch.through
        if batch.through == after:  # caught up
            if not request.wait:
                return
            await log.wait(after, WAIT)
        after = batch.through
