"""MQTT logins: every node logs in to its broker as itself, with a password derived from the
system secret the way its gRPC token is: HMAC-SHA256(secret, "cqrs-flow mqtt " + user).

`cqrs-flow up` hands a gateway or writer only its own password, and the embedded broker only the
SHA-256 of the passwords of the users it accepts; a node run by hand (`cqrs-flow node`) derives
them from CQRS_FLOW_SECRET. The same passwords log in to an external broker once it knows them
(`cqrs-flow mosquitto-auth` writes Mosquitto's password and ACL files).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cqrs_flow.errors import NodeError
from cqrs_flow.security.tokens import ENV_SECRET, derive, digest, json_map_from_env
from cqrs_flow.topology.access import mqtt_access
from cqrs_flow.topology.model import BrokerNode, GatewayNode, Topology, WriterNode

__all__ = [
    "ENV_MQTT_PASSWORD",
    "ENV_MQTT_USERS",
    "MqttLogin",
    "derive_mqtt_password",
    "login_from_env",
    "mqtt_launch_environment",
    "password_digest",
    "users_from_env",
]

ENV_MQTT_PASSWORD = "CQRS_FLOW_MQTT_PASSWORD"
ENV_MQTT_USERS = "CQRS_FLOW_MQTT_USERS"


def derive_mqtt_password(secret: str, user: str) -> str:
    return derive(secret, f"mqtt {user}")


password_digest = digest  # what the embedded broker is told of the passwords it accepts


@dataclass(frozen=True)
class MqttLogin:
    """A user name and password for the broker."""

    user: str
    password: str

    @property
    def tag(self) -> str:
        """A short value only the holder of the password knows: it makes the node's MQTT client id
        unguessable on the embedded broker, so no other client can even name its session (the
        broker also refuses a client id that is another user's session)."""
        return hashlib.sha256(f"client id {self.password}".encode()).hexdigest()[:12]

    def __repr__(self) -> str:  # never print the password
        return f"MqttLogin(user={self.user!r})"


def _broker_of(topology: Topology, node: str) -> BrokerNode | None:
    found = topology.nodes.get(node)
    broker = (
        topology.nodes.get(found.broker) if isinstance(found, (GatewayNode, WriterNode)) else None
    )
    return broker if isinstance(broker, BrokerNode) else None


def _users(topology: Topology, broker: BrokerNode, secret: str) -> dict[str, str]:
    return {
        user: password_digest(derive_mqtt_password(secret, user))
        for user in sorted(mqtt_access(topology, broker))
    }


def mqtt_launch_environment(topology: Topology, node: str, secret: str) -> dict[str, str]:
    """What `up` adds to a node's environment: a client its own password, the embedded broker
    the password hashes of the users it accepts."""
    found = topology.nodes[node]
    if isinstance(found, BrokerNode):
        return {ENV_MQTT_USERS: json.dumps(_users(topology, found, secret))}
    if _broker_of(topology, node) is not None:
        return {ENV_MQTT_PASSWORD: derive_mqtt_password(secret, node)}
    return {}


def _no_secret(node: str) -> NodeError:
    return NodeError(
        f"node '{node}' has no MQTT credentials: run it with `cqrs-flow up`, or set {ENV_SECRET} "
        "to the same secret on every node "
        f"(for example: export {ENV_SECRET}=$(openssl rand -hex 32))"
    )


def login_from_env(topology: Topology, node: str, env: Mapping[str, str] = os.environ) -> MqttLogin:
    """The node's broker login, from what `up` handed it or from CQRS_FLOW_SECRET."""
    if env.get(ENV_MQTT_PASSWORD):
        return MqttLogin(node, env[ENV_MQTT_PASSWORD])
    if env.get(ENV_SECRET):
        return MqttLogin(node, derive_mqtt_password(env[ENV_SECRET], node))
    raise _no_secret(node)


def users_from_env(
    topology: Topology, broker: BrokerNode, env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """user -> SHA-256 of its password, for the embedded broker."""
    if env.get(ENV_MQTT_USERS):
        return json_map_from_env(env, ENV_MQTT_USERS, "user name -> password hash")
    if env.get(ENV_SECRET):
        return _users(topology, broker, env[ENV_SECRET])
    raise _no_secret(broker.name)
