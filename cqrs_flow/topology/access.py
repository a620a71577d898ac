"""Who may do what on an MQTT broker, computed from the topology (the broker's ACL).

Every node that talks to a broker logs in as itself (its node name) and may touch only the topics
its job needs: a gateway publishes the command topics of its mutations and subscribes to the
status topic; a writer subscribes to the command topics it applies and publishes the status topic
and its dead-letter topic. A broker's `clients` (tools, dashboards) get what the topology grants
them. The embedded broker enforces this table; `cqrs-flow mosquitto-auth` writes it for Mosquitto.
"""

from __future__ import annotations

from dataclasses import dataclass

from cqrs_flow.topology.model import BrokerNode, GatewayNode, Topology, WriterNode
from cqrs_flow.topology.topics import matches

__all__ = ["MqttAccess", "covers", "mqtt_access", "shared", "writer_subscriptions"]


def covers(allowed: str, requested: str) -> bool:
    """Whether every topic the filter `requested` matches is matched by the filter `allowed`.

    A topic name is covered by any filter matching it; 'a/+' covers 'a/b' and 'a/+', not 'a/#'."""
    wanted, granted = requested.split("/"), allowed.split("/")
    for i, part in enumerate(granted):
        if part == "#":
            return True
        if i >= len(wanted) or wanted[i] == "#" or (part != "+" and part != wanted[i]):
            return False
    return len(granted) == len(wanted)


@dataclass(frozen=True)
class MqttAccess:
    """What one MQTT user may do: the topic filters it may publish to and subscribe to."""

    user: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()

    def may_publish(self, topic: str) -> bool:
        return any(matches(allowed, topic) for allowed in self.publish)

    def may_subscribe(self, topic_filter: str) -> bool:
        return any(covers(allowed, topic_filter) for allowed in self.subscribe)


def writer_subscriptions(topology: Topology, writer: WriterNode) -> list[str]:
    """The writer's filters, plus the topics of commands it names that no filter covers
    (overlapping subscriptions could deliver a message twice). The topic filters, as the ACL
    knows them: see `shared` for what a writer in a group subscribes to."""
    named = [topology.commands[c].topic for c in writer.commands if c in topology.commands]
    return [
        *writer.topics,
        *dict.fromkeys(t for t in named if not any(matches(f, t) for f in writer.topics)),
    ]


def shared(writer: WriterNode, topic_filter: str) -> str:
    """What the writer subscribes to for `topic_filter`: itself, or in its group's MQTT shared
    subscription ($share/<group>/<filter>: the broker hands each message to one member)."""
    group = writer.share_group
    return f"$share/{group}/{topic_filter}" if group else topic_filter


def mqtt_access(topology: Topology, broker: BrokerNode) -> dict[str, MqttAccess]:
    """user -> access, for every node using `broker` and every client the broker declares."""
    access: dict[str, MqttAccess] = {}
    status = topology.status_topic
    for gateway in topology.nodes_of(GatewayNode):
        if gateway.broker == broker.name:
            topics = [
                topology.commands[m.command].topic
                for m in gateway.mutations.values()
                if m.command in topology.commands
            ]
            access[gateway.name] = MqttAccess(gateway.name, tuple(dict.fromkeys(topics)), (status,))
    for writer in topology.nodes_of(WriterNode):
        if writer.broker == broker.name:
            publish = (status, writer.dead_letter) if writer.dead_letter else (status,)
            access[writer.name] = MqttAccess(
                writer.name, publish, tuple(writer_subscriptions(topology, writer))
            )
    for name, client in broker.clients.items():
        access[name] = MqttAccess(name, client.publish, client.subscribe)
    return access
