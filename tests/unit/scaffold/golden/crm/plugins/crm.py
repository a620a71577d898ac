"""Business logic of the crm system, scaffolded by `cqrs-flow init`: rules the gateway checks
before it publishes a command. topology.yaml hooks them in (nodes.gateway.plugins).

A plugin can also answer reader RPCs (ReaderPlugin) or see each command before the writer applies
it (WriterPlugin); see plugins/README.md in cqrs-flow for the whole API.
"""

from __future__ import annotations

from typing import Any, Mapping

from google.protobuf.message import Message

from cqrs_flow.protobuf.messages import find_field, get_path, set_path
from cqrs_flow.plugins import GatewayPlugin, Rejected


class ContactRules(GatewayPlugin):
    """Checks the commands of addContact, updateContact and deleteContact before they are published.

    config: required, the text fields that must not be blank (they are trimmed, too).
    """

    async def start(self) -> None:
        self.required = list(self.config.get("required", []))
        self.context.log.info("ContactRules loaded; required fields: %s", ", ".join(self.required) or "none")

    async def before_publish(self, mutation: str, command: Message, arguments: Mapping[str, Any]) -> None:
        # `command` is the request the writer will apply: AddContactRequest, UpdateContactRequest or
        # DeleteContactRequest. Raise Rejected("why") to answer ERROR with that message and publish
        # nothing, or change `command` in place.
        for name in self.required:
            path = find_field(command.DESCRIPTOR, name)  # "contact.<name>"; None in a delete
            if path is None:
                continue
            value = get_path(command, path).strip()
            if not value:
                raise Rejected(f"{name} must not be empty")
            set_path(command, path, value)

        # Your own rules go here, for example:
        #
        # if mutation in ("addContact", "updateContact") and command.contact.age < 0:
        #     raise Rejected("age must not be negative")
        #
        # if mutation == "deleteContact":
        #     raise Rejected("contacts are kept forever here")
