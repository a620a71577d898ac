"""The node runtime: SIGTERM ends a node whatever it is doing, start-up included."""

from __future__ import annotations

import asyncio
import os
import signal

from cqrs_flow.nodes.runtime import NodeService, serve
from cqrs_flow.topology.model import Node


class WaitsForever(NodeService):
    """A node whose start never finishes (a writer waiting for a broker that is gone)."""

    stopped = False

    async def start(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        WaitsForever.stopped = True


def test_sigterm_during_start_stops_the_node(shipped):
    async def run() -> None:
        service = WaitsForever(shipped, Node(name="stuck"), None, None)
        asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serve(service), 5)

    asyncio.run(run())
    assert WaitsForever.stopped
