"""Business logic for the contacts system: a read-side RPC computed by the reader, and name
rules checked by the gateway before a command is published."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.plugins import GatewayPlugin, ReaderPlugin, Rejected
from cqrs_flow.protobuf.messages import find_field, get_path, set_path


class ReverseName(ReaderPlugin):
    """Answers ReverseName(id) with the contact's name reversed, read through the store's read
    service."""

    async def ReverseName(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        get = self.context.store.request_class("GetContact")(id=request.id)
        found = await self.context.store.call(
            "GetContact", get
        )  # NOT_FOUND passes on to the caller
        response = self.context.message_class("contacts.ReverseNameResponse")()
        response.name = found.contact.name[::-1]
        return response


class NameRules(GatewayPlugin):
    """Trims a command's name and refuses an empty or over-long one.

    config: field (default "name"), max_length (default 100).
    """

    async def before_publish(
        self, mutation: str, command: Message, arguments: Mapping[str, Any]
    ) -> None:
        field = self.config.get("field", "name")
        path = find_field(command.DESCRIPTOR, field)
        if path is None:
            return  # this command carries no name (a delete)
        value = get_path(command, path).strip()
        limit = int(self.config.get("max_length", 100))
        if not value:
            raise Rejected(f"{field} must not be empty")
        if len(value) > limit:
            raise Rejected(f"{field} is {len(value)} characters long; at most {limit} are allowed")
        set_path(command, path, value)
