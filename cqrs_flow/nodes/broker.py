"""The embedded MQTT broker (amqtt): where commands travel from gateways to writers."""

from __future__ import annotations

import warnings

from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.topology.model import BrokerNode

__all__ = ["BrokerService"]


class BrokerService(NodeService):
    node: BrokerNode

    async def start(self) -> None:
        with warnings.catch_warnings():  # amqtt warns about its own deprecated config keys
            warnings.simplefilter("ignore", DeprecationWarning)
            from amqtt.broker import Broker

            self._broker = Broker({
                "listeners": {"default": {"type": "tcp", "bind": str(self.node.listen)}},
                # Only anonymous auth and no $SYS publishing: the broker is internal to the system.
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            })
        try:
            await self._broker.start()
        except Exception as exc:  # amqtt wraps socket errors in its own BrokerError
            cause = exc.__cause__ or exc
            raise NodeError(f"MQTT broker cannot listen on {self.node.listen}: {cause}") from None
        self.log.info("MQTT broker listening on %s", self.node.listen)

    async def stop(self) -> None:
        broker = getattr(self, "_broker", None)
        if broker is not None and broker.transitions.state == "started":
            await broker.shutdown()
