"""amqtt plugins of the embedded broker: who may log in, and which topics each user may use.

amqtt loads plugins by dotted path and fills their `Config` dataclass from the broker's config;
BrokerService passes the password hashes and the topology's ACL (cqrs_flow.topology.access).
With MQTT 3.1.1 a refused publish is acknowledged and dropped (the protocol has no way to say
no), a refused subscription gets the failure code 0x80 in its SUBACK.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from cqrs_flow.mqtt_auth import password_digest
from cqrs_flow.topology.access import MqttAccess

__all__ = ["NodeLogin", "RoutingBroker", "TopicAccess"]

log = logging.getLogger("cqrs_flow.broker")


class NodeLogin(BaseAuthPlugin):
    """Accepts a user whose password hashes to the SHA-256 it was given; no anonymous access."""

    @dataclass
    class Config:
        users: dict[str, str] = field(default_factory=dict)  # user -> sha256(password), hex

    async def authenticate(self, *, session: Session) -> bool:
        user, password = session.username or "", session.password or ""
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        expected = self.config.users.get(user)
        if expected is not None and hmac.compare_digest(expected, password_digest(password)):
            return True
        log.warning("refused MQTT login of %s (client id %r): %s", repr(user) if user else "an anonymous client",
                    session.client_id, "wrong password" if expected else "unknown user")
        return False


class TopicAccess(BaseTopicPlugin):
    """Lets each user publish and subscribe only where the topology's ACL says."""

    @dataclass
    class Config:
        publish: dict[str, list[str]] = field(default_factory=dict)  # user -> topic filters
        subscribe: dict[str, list[str]] = field(default_factory=dict)

    def __init__(self, context) -> None:
        super().__init__(context)
        users = set(self.config.publish) | set(self.config.subscribe)
        self._access = {user: MqttAccess(user, tuple(self.config.publish.get(user, ())),
                                         tuple(self.config.subscribe.get(user, ()))) for user in users}

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool:
        if action == Action.RECEIVE:
            return True  # the subscription was checked when it was made
        access = self._access.get(session.username or "") if session else None
        if access is None or topic is None:
            return False
        if action == Action.PUBLISH:
            allowed = access.may_publish(topic)
        elif action == Action.SUBSCRIBE:
            allowed = access.may_subscribe(topic)
        else:
            allowed = False
        if not allowed:
            log.warning("refused: %r may not %s %r (not in its access list from the topology)",
                        access.user, "publish to" if action == Action.PUBLISH else "subscribe to", topic)
        return allowed


class RoutingBroker(Broker):
    """amqtt's broker, routing every message a client sent before it disconnects.

    amqtt acknowledges a QoS 1 publish when it reads it and routes it later, one message at a
    time (checking its topic is one await per message); a client that disconnects meanwhile had
    the rest of its acknowledged messages dropped. (Written against amqtt 0.11-0.12; without the
    hook it relies on, the broker behaves as amqtt does.)"""

    async def _handle_disconnect(self, client_session: Session, handler, disconnect_waiter) -> None:
        queue = getattr(client_session, "delivered_message_queue", None)
        route = getattr(self, "_handle_message_delivery", None)
        while queue is not None and route is not None and not queue.empty():
            delivered = asyncio.get_running_loop().create_future()
            delivered.set_result(queue.get_nowait())
            if not await route(client_session, handler, delivered):
                break
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
