"""A writer plugin that logs every command, as JSON, just before it is applied."""

from __future__ import annotations

import json

from google.protobuf.message import Message

from cqrs_flow.plugins import WriterPlugin
from cqrs_flow.protobuf.messages import to_data


class CommandLog(WriterPlugin):
    async def before_apply(self, command_name: str, command: Message) -> None:
        self.context.log.info(
            "command %s: %s", command_name, json.dumps(to_data(command), sort_keys=True)
        )
