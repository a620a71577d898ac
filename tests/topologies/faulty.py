"""Plugins that fail on purpose, for tests/e2e/test_plugins.py."""

from cqrs_flow.plugins import GatewayPlugin, ReaderPlugin


class RaisingGateway(GatewayPlugin):
    async def before_publish(self, mutation, command, arguments):
        if arguments.get("name") == "boom":
            raise RuntimeError("internal detail that must not reach the client")


class RaisingReader(ReaderPlugin):
    async def ReverseName(self, request, context):
        raise RuntimeError("internal detail that must not reach the client")
