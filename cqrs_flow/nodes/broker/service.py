"""The embedded MQTT broker (amqtt): where commands travel from gateways to writers."""

from __future__ import annotations

import warnings
from typing import Any

from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.security.mqtt_logins import users_from_env
from cqrs_flow.telemetry.server import listen_error
from cqrs_flow.topology.access import mqtt_access
from cqrs_flow.topology.model import BrokerNode
from cqrs_flow.transport.mqtt import max_packet_bytes
from cqrs_flow.transport.tls import broker_listener_tls

__all__ = ["BrokerService"]


class BrokerService(NodeService):
    node: BrokerNode

    async def setup(self) -> None:
        with warnings.catch_warnings():  # amqtt warns about its own deprecated config keys
            warnings.simplefilter("ignore", DeprecationWarning)
            from cqrs_flow.nodes.broker.access import RoutingBroker as Broker

            access = mqtt_access(self.topology, self.node)
            broker = Broker(
                {
                    "listeners": {
                        "default": {
                            "type": "tcp",
                            "bind": str(self.node.listen),
                            **broker_listener_tls(self.topology, self.node),
                        }
                    },
                    # Every client logs in and keeps to the topics the topology gives it; no
                    # anonymous access and no $SYS topics, wherever the broker listens.
                    "plugins": {
                        "cqrs_flow.nodes.broker.access.NodeLogin": {
                            "users": users_from_env(self.topology, self.node)
                        },
                        "cqrs_flow.nodes.broker.access.TopicAccess": {
                            "publish": {user: list(a.publish) for user, a in access.items()},
                            "subscribe": {user: list(a.subscribe) for user, a in access.items()},
                        },
                    },
                }
            )
        broker.max_packet_bytes = max_packet_bytes(self.topology, self.node.name)
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps socket errors in its own BrokerError
            cause = exc.__cause__ or exc
            if isinstance(cause, OSError):
                why = listen_error(self.node.name, "mqtt", self.node.listen, cause)
                raise NodeError(why) from None
            raise NodeError(f"MQTT broker cannot listen on {self.node.listen}: {cause}") from None
        self.resources.push_async_callback(broker.shutdown)
        self.metrics.broker_clients.set_function(lambda: _connected(broker))
        self.log.info(
            "MQTT broker listening on %s%s (%d users, no anonymous access, packets of at "
            "most %d bytes)",
            self.node.listen,
            " over TLS" if self.node.tls else "",
            len(access),
            broker.max_packet_bytes,
        )


def _connected(broker: Any) -> int:
    """MQTT clients connected now (amqtt keeps a session per client id, connected or not)."""
    sessions = list(getattr(broker, "_sessions", {}).values())
    return sum(1 for session, _ in sessions if session.transitions.state == "connected")
