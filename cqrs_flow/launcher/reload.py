"""Reloading a running topology (`up --watch`, SIGHUP): which nodes a change affects.

`affected_nodes` compares the running topology with the new one, node by node, on everything a
node process reads: its own settings; the files it uses (its GraphQL schema, the .proto files
that define the services and messages it serves or calls, its plugins' modules, its TLS and key
files); how it reaches the nodes it depends on (their addresses, services, TLS); its
credentials (who may call it, who may log in to a broker and where they may publish); its
metrics address; the commands and entities it handles; the settings every node reads. The
launcher restarts exactly those nodes, and starts added ones and stops removed ones; the
others keep running, with their pids.

`Reloader` loads the topology again (the same checks `validate` runs, through the loader `up`
gives it) and tells, by content, which of the files the system uses changed since the version
that runs: an editor saving a file unchanged restarts nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.topology.access import mqtt_access
from cqrs_flow.topology.model import (
    Auth,
    BrokerNode,
    GatewayNode,
    Node,
    ProjectionNode,
    ReaderNode,
    StoreNode,
    TlsClient,
    TlsServer,
    Topology,
    WriterNode,
)
from cqrs_flow.topology.paths import project_path

__all__ = [
    "Affected",
    "Loader",
    "Reload",
    "Reloader",
    "affected_nodes",
    "node_files",
    "watched_files",
]

# Loads and checks the topology file as `validate` does (TopologyError if it does not
# validate): the topology and its compiled protos.
Loader = Callable[[], tuple[Topology, ProtoSet | None]]


@dataclass(frozen=True)
class Affected:
    """What a reload does: nodes to start (added), to stop (removed), and to restart, each with
    the reason why."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.restarted)

    @property
    def to_stop(self) -> set[str]:
        return {*self.removed, *self.restarted}

    @property
    def to_start(self) -> set[str]:
        return {*self.added, *self.restarted}


def affected_nodes(
    old: Topology,
    new: Topology,
    changed_files: Collection[Path] = (),
    protos: ProtoSet | None = None,
) -> Affected:
    """The nodes to restart, start and stop to go from `old` to `new`, given the files whose
    content changed (absolute paths) and the new topology's compiled protos (None: a changed
    .proto file counts as used by every node that reads protos)."""
    changed = {p.resolve() for p in changed_files}
    restarted: dict[str, str] = {}
    shared = _shared_settings(old) != _shared_settings(new)
    for name in new.nodes:
        if name not in old.nodes:
            continue
        why = _why(old, new, name, changed, protos, shared)
        if why:
            restarted[name] = why
    for name in list(restarted):  # nodes sharing a process (a reader in its gateway's) go together
        for other in _process_mates(old, name) | _process_mates(new, name):
            if other in old.nodes and other in new.nodes:
                restarted.setdefault(other, f"shares a process with {name}")
    return Affected(
        added=tuple(n for n in new.nodes if n not in old.nodes),
        removed=tuple(n for n in old.nodes if n not in new.nodes),
        restarted=restarted,
    )


def _why(
    old: Topology,
    new: Topology,
    name: str,
    changed: set[Path],
    protos: ProtoSet | None,
    shared: bool,
) -> str | None:
    """Why node `name`, in both topologies, must restart; None if it need not."""
    before, after = old.nodes[name], new.nodes[name]
    if before != after:
        return "its settings changed"
    if shared:
        return "settings every node reads changed"
    used = sorted(node_files(new, name, protos) & changed)
    if used:
        return f"it uses {', '.join(_shown(new, p) for p in used)}"
    for dependency in after.dependencies:
        if _reach(old, name, dependency) != _reach(new, name, dependency):
            return f"{dependency}'s address or services changed"
    if _credentials(old, name) != _credentials(new, name):
        return "the nodes and clients it accepts changed"
    if _metrics(old, name) != _metrics(new, name):
        return "its metrics address changed"
    if _commands(old, name) != _commands(new, name):
        return "the commands it handles changed"
    if _derived(old, name) != _derived(new, name):
        return "its writers' delays or its store's list limit changed"
    if _entities(old, name) != _entities(new, name):
        return "the entities it handles changed"
    return None


def _shown(topology: Topology, path: Path) -> str:
    try:
        return str(path.relative_to(topology.root.resolve()))
    except ValueError:
        return str(path)


def _shared_settings(topology: Topology) -> tuple[object, ...]:
    """What every node process reads of the topology besides its own node (the launcher's own
    timeouts are not among them)."""
    return (
        topology.name,
        topology.status_topic,
        topology.command_id,
        topology.subject,
        topology.secret,
        topology.plugin_path,
        topology.project,
        topology.protos,
    )


def _reach(topology: Topology, caller: str, name: str) -> object:
    """How node `caller` reaches node `name`, which it depends on, and what it calls there (of a
    store, the sides it uses)."""
    node = topology.nodes.get(name)
    if isinstance(node, BrokerNode):
        return (node.address, node.protocol, node.url, node.tls)
    if isinstance(node, StoreNode):
        user = topology.nodes[caller]
        sides = set()
        if isinstance(user, (WriterNode, ReaderNode, ProjectionNode)) and user.store.node == name:
            sides.add(user.store.side)
        if isinstance(user, ProjectionNode) and user.follows == name:
            sides.add("read")
        return tuple(node.service(side) for side in sorted(sides))
    if isinstance(node, ReaderNode):
        return (node.listen, node.service, node.rpcs, node.tls)
    return node  # another kind, or gone: nothing depends on those but by name


def _credentials(topology: Topology, name: str) -> object:
    """Who may call the node (gRPC) or log in to it and where they may go (a broker)."""
    node = topology.nodes[name]
    if isinstance(node, BrokerNode):
        return mqtt_access(topology, node)
    if isinstance(node, (StoreNode, ReaderNode)):
        return topology.callers_of(name)
    return None


def _metrics(topology: Topology, name: str) -> list[object]:
    node = topology.nodes[name]
    replicas = [None] if node.processes <= 1 else range(1, node.processes + 1)
    return [topology.metrics_of(name, r) for r in replicas]


def _commands(topology: Topology, name: str) -> object:
    """The commands a writer applies, or a gateway publishes."""
    node = topology.nodes[name]
    if isinstance(node, WriterNode):
        return {c: topology.commands[c] for c in topology.commands_of(node)}
    if isinstance(node, GatewayNode):
        return {m.command: topology.commands.get(m.command) for m in node.mutations.values()}
    return None


def _derived(topology: Topology, name: str) -> object:
    """What other nodes' settings decide for a gateway unless it sets it itself: how long it
    waits for its writers' reports (their delays), the largest list it asks for (its store's
    limit)."""
    node = topology.nodes[name]
    if isinstance(node, GatewayNode):
        return (topology.redeliver_after(node), topology.list_count(node))
    return None


def _entities(topology: Topology, name: str) -> object:
    node = topology.nodes[name]
    if isinstance(node, StoreNode):
        return topology.entities_of(node)
    if isinstance(node, ReaderNode):
        store = topology.nodes.get(node.store.node)
        return topology.entities_of(store) if isinstance(store, StoreNode) else None
    if isinstance(node, (GatewayNode, ProjectionNode)):
        return dict(topology.entities)
    return None


# -- the files a node uses -------------------------------------------------------------------


def node_files(topology: Topology, name: str, protos: ProtoSet | None = None) -> set[Path]:
    """The files of the project node `name` reads when it starts (absolute, links resolved)."""
    node = topology.nodes[name]
    found: set[Path] = set()
    if isinstance(node, GatewayNode):
        found.add(_path(topology, node.schema))
        found |= _auth_files(topology, node.auth)
    for ref in getattr(node, "plugins", ()):
        found |= _plugin_files(topology, ref.use)
    found |= _tls_files(topology, node)
    if not isinstance(node, BrokerNode):
        found |= _proto_files(topology, node, protos)
    return found


def watched_files(topology: Topology, protos: ProtoSet | None = None) -> set[Path]:
    """The topology file and every file a node of it uses."""
    found = {topology.source.resolve()}
    for name in topology.nodes:
        found |= node_files(topology, name, protos)
    return found | set(_all_protos(topology))


def _path(topology: Topology, relative: Path) -> Path:
    return project_path(topology, relative).resolve()


def _auth_files(topology: Topology, auth: Auth | None) -> set[Path]:
    if auth is None:
        return set()
    files = {auth.jwks_file} | ({auth.secret.file} if auth.secret else set())
    return {_path(topology, f) for f in files if f is not None}


def _tls_files(topology: Topology, node: Node) -> set[Path]:
    settings: list[object] = [getattr(node, "tls", None), getattr(node, "client_tls", None)]
    if isinstance(node, StoreNode):
        settings += [node.write.tls, node.read.tls]
    files: set[Path] = set()
    for tls in settings:
        if isinstance(tls, (TlsServer, TlsClient)):
            files |= {tls.cert, tls.key}
        if isinstance(tls, TlsServer) and tls.ca is not None:
            files.add(tls.ca)
    if isinstance(node, BrokerNode) and node.tls is not None:
        files |= {f for f in (node.tls.cert, node.tls.key, node.tls.ca) if f is not None}
    return {_path(topology, f) for f in files}


def _plugin_files(topology: Topology, use: str) -> set[Path]:
    """The source of the module a plugin's dotted path names, found on the topology's
    plugin_path as the node will import it (an installed entry point is not the project's)."""
    if "." not in use and ":" not in use:
        return set()
    module = use.partition(":")[0] if ":" in use else use.rpartition(".")[0]
    parts = module.split(".")
    for directory in topology.plugin_path:
        base = _path(topology, directory).joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return {candidate.resolve()}
    return set()


def _include_dirs(topology: Topology) -> list[Path]:
    """Where the topology's protos import from: each proto's directory (as the compiler does)."""
    return list(dict.fromkeys((topology.root / p).resolve().parent for p in topology.protos))


def _all_protos(topology: Topology) -> list[Path]:
    """Every .proto file the compiler may read (the topology's and those they may import)."""
    found = [(topology.root / p).resolve() for p in topology.protos]
    for directory in _include_dirs(topology):
        found += [p.resolve() for p in sorted(directory.glob("*.proto"))]
    return list(dict.fromkeys(found))


def _proto_files(topology: Topology, node: Node, protos: ProtoSet | None) -> set[Path]:
    """The .proto files defining the services and messages the node serves, calls or stores,
    and those they import; all of the project's when the compiled protos are not given or do
    not have a name the node uses."""
    if protos is None:
        return set(_all_protos(topology))
    names = _proto_names(topology, node)
    files = []
    try:
        for name in names:
            try:
                files.append(protos.pool.FindServiceByName(name).file)
            except KeyError:
                files.append(protos.pool.FindMessageTypeByName(name).file)
    except KeyError:
        return set(_all_protos(topology))
    seen: dict[str, object] = {}
    while files:
        file = files.pop()
        if file.name not in seen:
            seen[file.name] = file
            files.extend(file.dependencies)
    includes = _include_dirs(topology)
    return {
        (directory / file_name).resolve()
        for file_name in seen
        for directory in includes
        if (directory / file_name).is_file()
    }


def _proto_names(topology: Topology, node: Node) -> set[str]:
    """Full names of the gRPC services and messages node reads from the compiled protos."""
    nodes = topology.nodes
    names: set[str] = set()

    def store_side(endpoint_node: str, side: str) -> None:
        store = nodes.get(endpoint_node)
        if isinstance(store, StoreNode):
            names.add(store.service(side).name)
            names.update(e.document for e in topology.entities_of(store))

    def follows(name: str) -> None:
        target = nodes.get(name)
        if isinstance(target, ReaderNode):
            names.add(target.service)
            store_side(target.store.node, "read")
        elif isinstance(target, StoreNode):
            store_side(name, "read")

    if isinstance(node, StoreNode):
        store_side(node.name, "write")
        store_side(node.name, "read")
    elif isinstance(node, ReaderNode):
        follows(node.name)
    elif isinstance(node, WriterNode):
        store_side(node.store.node, "write")
    elif isinstance(node, GatewayNode):
        follows(node.reader)
        for mutation in node.mutations.values():
            for writer in topology.writers_of(mutation.command):
                store_side(writer.store.node, "write")
        names.update(e.document for e in topology.entities.values())
    elif isinstance(node, ProjectionNode):
        follows(node.follows)
        store_side(node.store.node, "write")
        names.update(e.document for e in topology.entities.values())
    return {n for n in names if n}


# -- loading again -----------------------------------------------------------------------------


def file_digests(files: Iterable[Path]) -> dict[Path, str | None]:
    """SHA-256 of each file's content; None for one that cannot be read (gone, mid-save)."""
    digests: dict[Path, str | None] = {}
    for path in files:
        try:
            digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digests[path] = None
    return digests


@dataclass(frozen=True)
class Reload:
    """A new version of the topology that validated, and what going to it means."""

    topology: Topology
    protos: ProtoSet | None
    digests: Mapping[Path, str | None]
    changed: frozenset[Path]  # files whose content differs from the running version's
    affected: Affected


class Reloader:
    """The version of the topology that runs, and loading the next one."""

    def __init__(self, load: Loader, topology: Topology, protos: ProtoSet | None) -> None:
        self.load = load
        self.topology = topology
        self.protos = protos
        self.digests: Mapping[Path, str | None] = file_digests(watched_files(topology, protos))

    def next(self) -> Reload:
        """Load and check the topology file again (CqrsFlowError, as `validate` reports it, when
        it does not validate) and compare it with the running version."""
        topology, protos = self.load()
        digests = file_digests(watched_files(topology, protos))
        changed = frozenset(
            p for p in self.digests.keys() | digests.keys() if self.digests.get(p) != digests.get(p)
        )
        affected = affected_nodes(self.topology, topology, changed, protos)
        return Reload(topology, protos, digests, changed, affected)

    @property
    def watched(self) -> frozenset[Path]:
        """The files of the running version: the topology file and those its nodes use."""
        return frozenset(self.digests)

    def accept(self, reload: Reload) -> None:
        """`reload` is the version that runs now."""
        self.topology, self.protos, self.digests = reload.topology, reload.protos, reload.digests


def _process_mates(topology: Topology, name: str) -> set[str]:
    """The other nodes run in the same process as `name` in `topology`."""
    if name not in topology.nodes:
        return set()
    host = topology.host_of(name)
    return ({host} | set(topology.guests_of(host))) - {name}
