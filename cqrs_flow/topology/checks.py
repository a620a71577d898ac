"""Wiring checks that need the whole model but not the protos: references, segregation,
topics, listen addresses, cycles, files, and the entities (entities.py).

Each check returns problems; nothing raises until every problem is known.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from cqrs_flow.errors import Problem
from cqrs_flow.topology.entities import check_entities
from cqrs_flow.topology.graph import find_cycle
from cqrs_flow.topology.model import (
    CHANGES_SERVICE,
    DOCUMENTS_SERVICE,
    Address,
    BrokerNode,
    Endpoint,
    GatewayNode,
    Node,
    ProjectionNode,
    ReaderNode,
    StoreNode,
    TlsServer,
    Topology,
    WriterNode,
)
from cqrs_flow.topology.paths import (
    MAX_PEM_BYTES,
    MAX_SOURCE_BYTES,
    file_problem,
    path_problem,
    root_problem,
)
from cqrs_flow.topology.problems import KeyPath, Problems, did_you_mean
from cqrs_flow.topology.topics import matches

__all__ = ["check_wiring"]

_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
_LOOPBACK_NAMES = {"localhost": "127.0.0.1", "ip6-localhost": "::1"}


def check_wiring(topology: Topology) -> list[Problem]:
    report = Problems(topology.located)
    if not topology.nodes and "nodes" in (topology.located.data if topology.located else {}):
        report(
            ("nodes",),
            "no nodes: a topology needs at least a broker, a store, a writer, "
            "a reader and a gateway to do anything",
        )
    _check_references(topology, report)
    check_entities(topology, report)
    _check_commands(topology, report)
    _check_listeners(topology, report)
    _check_mqtt_clients(topology, report)
    _check_grpc_clients(topology, report)
    _check_tls(topology, report)
    _check_files(topology, report)
    _check_data_directories(topology, report)
    _check_writer_groups(topology, report)
    _check_store_backends(topology, report)
    _check_projections(topology, report)
    _check_readers(topology, report)
    cycle = find_cycle(topology)
    if cycle:
        report(("nodes", cycle[0]), "dependency cycle: " + " -> ".join(cycle))
    return report.problems


def _check_references(topology: Topology, report: Problems) -> None:
    def ref(node: str, key: str, target: str, kind: type | tuple[type, ...], what: str) -> None:
        path = ("nodes", node, key)
        if not target:
            return  # missing or malformed, reported by the spec checker
        found = topology.nodes.get(target)
        if found is None:
            report(path, f"no node named '{target}'{did_you_mean(target, topology.nodes)}")
        elif found.kind and not isinstance(found, kind):  # no kind: its own problem is reported
            report(path, f"'{target}' is a {found.kind} node; expected {what}")

    def store_ref(node: str, endpoint: Endpoint, side: str, role: str) -> None:
        if not endpoint.node:
            return
        ref(node, "store", endpoint.node, StoreNode, "a store node")
        if endpoint.side != side:
            report(
                ("nodes", node, "store"),
                f"a {role} may use only a store's {side} service, not '{endpoint}' "
                f"(read/write segregation); use '{endpoint.node}.{side}'",
            )

    for node in topology.nodes.values():
        if isinstance(node, WriterNode):
            ref(node.name, "broker", node.broker, BrokerNode, "a broker node")
            store_ref(node.name, node.store, "write", "writer")
        elif isinstance(node, ReaderNode):
            store_ref(node.name, node.store, "read", "reader")
        elif isinstance(node, GatewayNode):
            ref(node.name, "broker", node.broker, BrokerNode, "a broker node")
            ref(node.name, "reader", node.reader, ReaderNode, "a reader node")
        elif isinstance(node, ProjectionNode):
            ref(node.name, "follows", node.follows, (ReaderNode, StoreNode), "a reader or a store")
            store_ref(node.name, node.store, "write", "projection")
        elif isinstance(node, BrokerNode) and node.url and "listen" in _raw(topology, node.name):
            report(
                ("nodes", node.name, "listen"),
                "an external broker (url) is not started by `up`, "
                "so it has no 'listen'; keep one of the two",
            )
        elif isinstance(node, BrokerNode) and not node.url and node.protocol != "3.1.1":
            report(
                ("nodes", node.name, "protocol"),
                "the embedded broker speaks MQTT 3.1.1 only; MQTT 5 needs an external broker (url)",
            )
        elif isinstance(node, StoreNode) and node.write.name and node.write.name == node.read.name:
            report(
                ("nodes", node.name, "read", "service"),
                "the read and write services must be different gRPC services",
            )


def _raw(topology: Topology, node: str) -> dict[str, Any]:
    """The node's mapping as written in the file (to tell a written key from a default)."""
    data = topology.located.data if topology.located else {}
    raw = (
        data.get("nodes", {}).get(node)
        if isinstance(data, dict) and isinstance(data.get("nodes"), dict)
        else None
    )
    return raw if isinstance(raw, dict) else {}


def _check_commands(topology: Topology, report: Problems) -> None:
    published: dict[str, list[str]] = defaultdict(list)
    for gateway in topology.nodes_of(GatewayNode):
        for field, mutation in gateway.mutations.items():
            path: KeyPath = ("nodes", gateway.name, "mutations", field, "command")
            if mutation.command not in topology.commands:
                report(
                    path,
                    "no command named "
                    f"'{mutation.command}'{did_you_mean(mutation.command, topology.commands)}",
                )
            published[mutation.command].append(gateway.name)
    consumed: dict[str, list[str]] = defaultdict(list)
    for writer in topology.nodes_of(WriterNode):
        if not writer.commands and not writer.topics:
            report(
                ("nodes", writer.name),
                "a writer needs 'commands' (names) or 'topics' (filters) "
                "saying which commands it applies",
            )
        for i, named in enumerate(writer.commands):
            if named not in topology.commands:
                report(
                    ("nodes", writer.name, "commands", i),
                    f"no command named '{named}'{did_you_mean(named, topology.commands)}",
                )
        for i, topic_filter in enumerate(writer.topics):
            if not any(matches(topic_filter, c.topic) for c in topology.commands.values()):
                topics = ", ".join(sorted(c.topic for c in topology.commands.values()))
                report(
                    ("nodes", writer.name, "topics", i),
                    f"filter '{topic_filter}' matches no command topic (topics: "
                    f"{topics or 'none'})",
                )
        for applied in topology.commands_of(writer):
            consumed[applied].append(writer.name)

    by_topic: dict[str, list[str]] = defaultdict(list)
    for name, command in topology.commands.items():
        path = ("commands", name)
        by_topic[command.topic].append(name)
        if not consumed[name]:
            report(
                path,
                f"topic '{command.topic}' is consumed by no writer: its commands would never "
                "be applied; add the command to a writer's 'commands'",
            )
        if not published[name]:
            report(
                path,
                f"topic '{command.topic}' is published by no gateway mutation: "
                f"{', '.join(consumed[name]) or 'nothing'} would wait for commands that never come",
            )
    reserved: dict[str, KeyPath] = {topology.status_topic: ("status_topic",)}
    reserved.update(
        {
            w.dead_letter: ("nodes", w.name, "dead_letter")
            for w in topology.nodes_of(WriterNode)
            if w.dead_letter
        }
    )
    for topic, path in reserved.items():
        if topic in by_topic:
            report(
                path,
                f"'{topic}' is also the topic of command {by_topic[topic][0]}; "
                "status and dead-letter topics need their own",
            )
        for writer in topology.nodes_of(WriterNode):
            for i, topic_filter in enumerate(writer.topics):
                if matches(topic_filter, topic):
                    report(
                        ("nodes", writer.name, "topics", i),
                        f"filter '{topic_filter}' also matches '{topic}', which carries no "
                        "commands",
                    )
    for topic, names in by_topic.items():
        if len(names) > 1:
            report(
                ("commands", names[1], "topic"),
                f"topic '{topic}' is used by commands {', '.join(names)}; each command needs its "
                "own topic",
            )


def _check_mqtt_clients(topology: Topology, report: Problems) -> None:
    """A broker's clients log in by name, as nodes do: a client named like a node would be it."""
    for broker in topology.nodes_of(BrokerNode):
        for name in broker.clients:
            if name in topology.nodes:
                report(
                    ("nodes", broker.name, "clients", name),
                    f"'{name}' is the name of a node, which logs in to the broker as itself; "
                    "give the client a name of its own",
                )


_GRPC_CALL = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:/([A-Za-z_]\w*))?$"
)


def _check_grpc_clients(topology: Topology, report: Problems) -> None:
    """A reader's outside gRPC clients: named unlike any node (a node's credentials name it),
    calling services the reader serves (their RPCs are checked against the protos, in
    contracts/reader.py), with a certificate only where the reader asks callers for one."""
    for reader in topology.nodes_of(ReaderNode):
        services = (reader.service, DOCUMENTS_SERVICE, CHANGES_SERVICE)
        for name, client in reader.clients.items():
            base = ("nodes", reader.name, "clients", name)
            if name in topology.nodes:
                report(
                    base,
                    f"'{name}' is the name of a node, which calls gRPC services as itself; "
                    "give the client a name of its own",
                )
            for index, call in enumerate(client.call):
                path = base + ("call", index)
                found = _GRPC_CALL.fullmatch(call)
                if found is None:
                    report(
                        path,
                        f"expected 'package.Service' or 'package.Service/Rpc', got {call!r}",
                    )
                elif found.group(1) not in services:
                    report(
                        path,
                        f"{reader.name} serves no service '{found.group(1)}'; it serves "
                        f"{', '.join(services[:-1])} and {services[-1]}"
                        f"{did_you_mean(found.group(1), services)}",
                    )
            if client.certificate is not None and not (reader.tls and reader.tls.client_auth):
                report(
                    base + ("certificate",),
                    f"a client certificate is asked for only over TLS with client_auth: give "
                    f"'{reader.name}' a 'tls' with client_auth: true and the 'ca' that signed "
                    "the client's certificate, or give the client a 'token'",
                )
            if client.token is not None and client.token.file is not None:
                problem = path_problem(topology, client.token.file)
                if problem:
                    report(base + ("token", "file"), problem)


GrpcCaller = ReaderNode | WriterNode | GatewayNode | ProjectionNode
GrpcEndpoint = tuple[KeyPath, Address, TlsServer | None, list[GrpcCaller]]


def grpc_endpoints(topology: Topology) -> list[GrpcEndpoint]:
    """Every gRPC endpoint: (key path of its settings, listen address, TLS, nodes wired to
    call it)."""
    endpoints: list[GrpcEndpoint] = []
    for store in topology.nodes_of(StoreNode):
        writers: list[GrpcCaller] = [
            n for n in topology.nodes_of(WriterNode) if n.store == Endpoint(store.name, "write")
        ]
        writers += topology.projections_into(store)
        readers: list[GrpcCaller] = [
            n for n in topology.nodes_of(ReaderNode) if n.store == Endpoint(store.name, "read")
        ]
        readers += [p for p in topology.nodes_of(ProjectionNode) if p.follows == store.name]
        for side, callers in (("write", writers), ("read", readers)):
            service = store.service(side)
            endpoints.append((("nodes", store.name, side), service.listen, service.tls, callers))
    for reader in topology.nodes_of(ReaderNode):
        gateways: list[GrpcCaller] = [
            g for g in topology.nodes_of(GatewayNode) if g.reader == reader.name
        ]
        gateways += [p for p in topology.nodes_of(ProjectionNode) if p.follows == reader.name]
        endpoints.append((("nodes", reader.name), reader.listen, reader.tls, gateways))
    return endpoints


def _check_tls(topology: Topology, report: Problems) -> None:
    def check_file(path: KeyPath, relative: Path | None) -> None:
        problem = file_problem(topology, relative, MAX_PEM_BYTES) if relative else None
        if problem:
            report(path, problem)

    for path, _, tls, callers in grpc_endpoints(topology):
        if tls is None:
            continue
        for key in ("cert", "key", "ca"):
            check_file(path + ("tls", key), getattr(tls, key))
        if tls.client_auth and tls.ca is None:
            report(
                path + ("tls", "client_auth"),
                "mutual TLS needs 'ca': the CA certificate that signed the callers' certificates",
            )
        for caller in callers if tls.client_auth else ():
            if caller.client_tls is None:
                report(
                    ("nodes", caller.name),
                    f"{'.'.join(map(str, path[1:]))} accepts only callers with a "
                    f"certificate (client_auth); give '{caller.name}' a 'client_tls' "
                    "with its certificate and key",
                )
    for broker in topology.nodes_of(BrokerNode):
        if broker.tls is None:
            continue
        path = ("nodes", broker.name, "tls")
        for key in ("cert", "key", "ca"):
            check_file(path + (key,), getattr(broker.tls, key))
        if not broker.external and (broker.tls.cert is None or broker.tls.key is None):
            report(path, "the embedded broker serves TLS with 'cert' and 'key': give both")
        elif broker.external and (broker.tls.cert or broker.tls.key):
            report(path, "an external broker has its own certificate; give only 'ca', to check it")
    for node in topology.nodes.values():
        client_tls = getattr(node, "client_tls", None)
        if client_tls is not None:
            check_file(("nodes", node.name, "client_tls", "cert"), client_tls.cert)
            check_file(("nodes", node.name, "client_tls", "key"), client_tls.key)


def _check_listeners(topology: Topology, report: Problems) -> None:
    seen: list[tuple[Address, KeyPath, str]] = []
    for node in topology.nodes.values():
        for what, address, path in [
            *((what, address, _listen_path(node, what)) for what, address in node.listens),
            *_metrics_listens(topology, node),
        ]:
            for other, other_path, other_what in seen:
                hosts = {_LOOPBACK_NAMES.get(h, h) for h in (other.host, address.host)}
                if other.port == address.port and (len(hosts) == 1 or hosts & _WILDCARD_HOSTS):
                    report(
                        path,
                        f"port {address.port} is already taken by "
                        f"{'.'.join(map(str, other_path[:2]))} ({other_what}, {other})",
                    )
            seen.append((address, path, what))


def _metrics_listens(topology: Topology, node: Node) -> list[tuple[str, Address, KeyPath]]:
    """Where each process of `node` serves metrics, and the key that says so."""
    path: KeyPath = ("nodes", node.name, "metrics") if node.metrics else ("metrics",)
    replicas = [None] if node.processes == 1 else list(range(1, node.processes + 1))
    return [
        (f"metrics of {node.name}" + (f".{replica}" if replica else ""), address, path)
        for replica in replicas
        if (address := topology.metrics_of(node.name, replica)) is not None
    ]


def _listen_path(node: Node, what: str) -> KeyPath:
    if isinstance(node, StoreNode):
        return ("nodes", node.name, what.split()[0], "listen")
    return ("nodes", node.name, "listen")


def _check_files(topology: Topology, report: Problems) -> None:
    """Every file and directory the topology names is inside the project (see paths.py); the
    protos and schemas it reads at once are there, and small enough to read."""
    problem = root_problem(topology)
    if problem is not None:
        report(("root",), problem)
    files: list[tuple[KeyPath, Path]] = [(("proto", i), p) for i, p in enumerate(topology.protos)]
    files += [
        (("nodes", g.name, "schema"), g.schema)
        for g in topology.nodes_of(GatewayNode)
        if str(g.schema) not in ("", ".")
    ]
    for path, relative in files:
        problem = file_problem(topology, relative, MAX_SOURCE_BYTES)
        if problem:
            report(path, problem)
    # Directories (created if missing) and secret files (read by the nodes that need them,
    # perhaps on another host): only where they are is checked here.
    elsewhere: list[tuple[KeyPath, Path]] = [
        (("plugin_path", i), p) for i, p in enumerate(topology.plugin_path)
    ]
    elsewhere += [
        (("nodes", n.name, "data"), n.data)
        for n in topology.nodes.values()
        if isinstance(n, (StoreNode, GatewayNode)) and n.data
    ]
    if topology.secret is not None and topology.secret.file is not None:
        elsewhere.append((("secret", "file"), topology.secret.file))
    elsewhere += [
        (("nodes", s.name, "mongodb", "url", "file"), s.mongodb.url.file)
        for s in topology.nodes_of(StoreNode)
        if s.mongodb is not None and s.mongodb.url.file is not None
    ]
    for path, relative in elsewhere:
        problem = path_problem(topology, relative)
        if problem:
            report(path, problem)


def _check_data_directories(topology: Topology, report: Problems) -> None:
    """Two nodes must not share a data directory: each holds it locked while it runs."""
    owners: dict[Path, str] = {}
    for node in topology.nodes.values():
        data = getattr(node, "data", None)
        if data is None:
            continue
        directory = (topology.root / data).resolve()
        if directory in owners:
            report(
                ("nodes", node.name, "data"),
                f"directory '{data}' is the data directory of node "
                f"'{owners[directory]}' too; give each node its own",
            )
        owners.setdefault(directory, node.name)


def _check_store_backends(topology: Topology, report: Problems) -> None:
    """`backend: mongodb` comes with its `mongodb` settings, and only with them; `data` is the
    embedded backend's database directory, so the two exclude each other."""
    for store in topology.nodes_of(StoreNode):
        raw = _raw(topology, store.name)
        path = ("nodes", store.name)
        if store.backend == "mongodb":
            if "mongodb" not in raw:
                report(
                    path + ("backend",),
                    "backend: mongodb needs a 'mongodb' section saying where its "
                    "connection URL is read, e.g. mongodb: {url: {env: MONGODB_URL}}",
                )
            if store.data is not None:
                report(
                    path + ("data",),
                    "'data' is the embedded backend's database directory; with backend: "
                    "mongodb the documents are kept by MongoDB: remove 'data'",
                )
        elif "mongodb" in raw:
            report(
                path + ("mongodb",),
                "the 'mongodb' settings are used only with backend: mongodb; "
                "add backend: mongodb, or remove them",
            )


def _check_writer_groups(topology: Topology, report: Problems) -> None:
    """Writers sharing subscriptions (replicas, or a group) need a broker that has MQTT shared
    subscriptions, and stores whose writes converge in any order (last_writer_wins)."""
    brokers: dict[str, str] = {}
    for writer in topology.nodes_of(WriterNode):
        group = writer.share_group
        if group is None:
            continue
        key = "replicas" if writer.replicas > 1 else "group"
        broker = topology.nodes.get(writer.broker)
        if isinstance(broker, BrokerNode) and not broker.external:
            report(
                ("nodes", writer.name, key),
                "writers sharing their subscriptions need MQTT shared subscriptions, which the "
                f"embedded broker (amqtt) does not have: point nodes.{broker.name}.url at a "
                "broker that has them (Mosquitto 1.6 or later, EMQX, HiveMQ), or run one writer",
            )
        store = topology.nodes.get(writer.store.node)
        if isinstance(store, StoreNode) and not store.last_writer_wins:
            report(
                ("nodes", writer.name, key),
                "commands on one entity may reach the store through several writers at once, "
                f"in any order: set nodes.{store.name}.last_writer_wins: true so that the "
                "newest command wins",
            )
        other = brokers.setdefault(group, writer.broker)
        if other != writer.broker:
            report(
                ("nodes", writer.name, "group"),
                f"group '{group}' is shared with writers on broker '{other}': a group lives on one "
                "broker",
            )


def _check_projections(topology: Topology, report: Problems) -> None:
    """A projection follows a store's read side by name (`<store>.read`, as readers write it),
    and writes an entity its store holds, which no other projection writes."""
    writers: dict[str, str] = {}
    for projection in topology.nodes_of(ProjectionNode):
        path = ("nodes", projection.name)
        written = _raw(topology, projection.name).get("follows")
        followed = topology.nodes.get(projection.follows)
        if isinstance(followed, StoreNode) and written == followed.name:
            report(
                path + ("follows",),
                f"a projection follows a store's read side: write '{followed.name}.read'",
            )
        entity = projection.entity
        store = topology.nodes.get(projection.store.node)
        if not entity or not isinstance(store, StoreNode):
            continue  # missing, or a wrong store: reported already
        if entity not in topology.entities:
            report(
                path + ("entity",),
                f"no entity named '{entity}'{did_you_mean(entity, topology.entities)}",
            )
        elif entity not in store.entities:
            report(
                path + ("entity",),
                f"entity '{entity}' is not held by store '{store.name}', where the projection "
                f"writes: add it to nodes.{store.name}.entities",
            )
        elif entity in writers:
            report(
                path + ("entity",),
                f"entity '{entity}' is the read model of projection '{writers[entity]}' "
                "already; a read model has one projection",
            )
        writers.setdefault(entity, projection.name)


def _check_readers(topology: Topology, report: Problems) -> None:
    """A reader's read model keeps entities its store holds; a reader placed in a gateway's
    process (`process`) is that gateway's reader (so a gateway hosts one reader at most)."""
    for reader in topology.nodes_of(ReaderNode):
        path = ("nodes", reader.name)
        store = topology.nodes.get(reader.store.node)
        if reader.read_model is not None and isinstance(store, StoreNode):
            for index, entity in enumerate(reader.read_model.entities):
                if entity not in store.entities:
                    report(
                        path + ("read_model", "entities", index),
                        f"store '{store.name}' holds no entity '{entity}'"
                        + (
                            did_you_mean(entity, store.entities)
                            or f"; it holds {', '.join(store.entities) or 'none'}"
                        ),
                    )
        if reader.process is None:
            continue
        host = topology.nodes.get(reader.process)
        gateways = [g.name for g in topology.nodes_of(GatewayNode)]
        if not isinstance(host, GatewayNode):
            report(
                path + ("process",),
                f"no gateway named '{reader.process}'{did_you_mean(reader.process, gateways)}; "
                "a reader shares a process only with a gateway that reads from it",
            )
        elif host.reader != reader.name:
            report(
                path + ("process",),
                f"gateway '{host.name}' reads from '{host.reader}', not from this reader: a "
                "reader shares a process only with a gateway that reads from it",
            )
