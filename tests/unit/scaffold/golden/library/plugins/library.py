"""Business logic of the library system, scaffolded by `cqrs-flow init`: rules the gateway checks
before it publishes a command. topology.yaml hooks them in (nodes.gateway.plugins).

A plugin can also answer reader RPCs (ReaderPlugin) or see each command before the writer applies
it (WriterPlugin); see plugins/README.md in cqrs-flow for the whole API.
"""

from __future__ import annotations

from typing import Any, Mapping

from google.protobuf.message import Message

from cqrs_flow.protobuf.messages import get_path, set_path
from cqrs_flow.plugins import GatewayPlugin, Rejected


class LibraryRules(GatewayPlugin):
    """Checks the commands of every mutation before they are published: the adds, updates and
    removals of authors, books and loans.

    config: required, the text fields that must not be blank, as <entity>.<field> (they are
    trimmed, too).
    """

    async def start(self) -> None:
        self.required = list(self.config.get("required", []))
        self.context.log.info("LibraryRules loaded; required fields: %s", ", ".join(self.required) or "none")

    async def before_publish(self, mutation: str, command: Message, arguments: Mapping[str, Any]) -> None:
        # `command` is the request the writer will apply: AddAuthorRequest, UpdateAuthorRequest,
        # RemoveAuthorRequest and so on for each entity. Raise Rejected("why") to answer ERROR with
        # that message and publish nothing, or change `command` in place.
        for path in self.required:
            entity, _, name = path.partition(".")
            if entity not in command.DESCRIPTOR.fields_by_name:
                continue  # a command on another entity, or a removal (it holds only the id)
            value = get_path(command, path).strip()
            if not value:
                raise Rejected(f"{name} must not be empty")
            set_path(command, path, value)

        # Your own rules go here, for example:
        #
        # if mutation in ("addBook", "updateBook") and command.book.year < 0:
        #     raise Rejected("year must not be negative")
        #
        # if mutation == "removeAuthor":
        #     raise Rejected("authors are kept forever here")
