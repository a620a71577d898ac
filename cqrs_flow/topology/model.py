"""The topology model: immutable descriptions of a CQRS system's nodes and how they are wired.

The model only describes; cqrs_flow.launcher runs it and cqrs_flow.nodes implement each kind.
Its defaults are read from the spec table (spec.py), so a node built in code and one loaded
from a file that leaves the same keys out are equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from cqrs_flow.topology import spec
from cqrs_flow.topology.yamlsource import LocatedData

__all__ = [
    "Address",
    "Auth",
    "BrokerNode",
    "Command",
    "Endpoint",
    "Entity",
    "GatewayNode",
    "GrpcClient",
    "MongoSettings",
    "MqttClient",
    "MqttTls",
    "Mutation",
    "Node",
    "PluginRef",
    "ProjectionNode",
    "Query",
    "ReadModelSettings",
    "ReaderNode",
    "RecordRetention",
    "Relation",
    "Retention",
    "Role",
    "RoleEntity",
    "RoleLimits",
    "SecretSource",
    "Service",
    "StoreNode",
    "Subscription",
    "TlsClient",
    "TlsServer",
    "Topology",
    "WriterNode",
    "frozen_map",
    "store_operation",
]


def _default(section: spec.Section | dict[str, spec.Field], key: str) -> Any:
    """The default of `key` in the spec table, the one place defaults are written."""
    return (section.fields if isinstance(section, spec.Section) else section)[key].default


def frozen_map(items: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    """A read-only view of a copy of `items`, for use in frozen dataclasses."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connect_host(self) -> str:
        """Where a client on this machine connects: a wildcard listen address means loopback."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    @property
    def target(self) -> str:
        """The address as a client dials it (a gRPC target, an MQTT host:port)."""
        host = self.connect_host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


@dataclass(frozen=True)
class Endpoint:
    """A reference to one of a store's two services: ('store', 'read') is written 'store.read'."""

    node: str
    side: str  # "read" or "write"

    def __str__(self) -> str:
        return f"{self.node}.{self.side}"


@dataclass(frozen=True)
class Command:
    """A write command: published on `topic`, applied by the store write RPC `rpc`."""

    name: str
    topic: str
    rpc: str
    key: str | None = None  # field path of the entity key in the request; None: found by name


@dataclass(frozen=True)
class Relation:
    """A GraphQL field of an entity that leads to another entity: to one by `key` (a field of
    this entity's documents holding the other's key), to many by `by` (a field of the other
    entity's documents holding this one's key). One of the two is set (checks.py says so)."""

    name: str
    entity: str
    key: str | None = None
    by: str | None = None

    @property
    def many(self) -> bool:
        return self.by is not None


@dataclass(frozen=True)
class Entity:
    """A document type of the system: its protobuf message, where its documents are kept, its key
    and timestamp fields, the fields list queries may filter and order on, and its relations.
    Its name is its GraphQL type's name."""

    name: str
    document: str
    collection: str
    key: str = _default(spec.ENTITY, "key")
    timestamp: str | None = None
    indexes: tuple[str, ...] = ()
    relations: Mapping[str, Relation] = dataclasses.field(default_factory=frozen_map)
    # Where it is written: ('entities', name), or ('nodes', store) for a store of one entity
    # that describes it itself (`document:`); problems are reported there.
    where: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    @property
    def path(self) -> tuple[str, ...]:
        return self.where or ("entities", self.name)


def store_operation(value: str) -> tuple[str | None, str]:
    """'Book.delete' -> ('Book', 'delete'); 'delete' -> (None, 'delete'): the entity an RPC's
    operation names, if it names one (spec.store_operation checked the form)."""
    entity, _, op = value.rpartition(".")
    return entity or None, op


@dataclass(frozen=True)
class TlsServer:
    """TLS of a gRPC endpoint; paths are relative to the topology file."""

    cert: Path
    key: Path
    ca: Path | None = None
    client_auth: bool = _default(spec.TLS, "client_auth")  # mutual TLS: callers show a certificate
    server_name: str | None = None  # the name callers expect in the certificate


@dataclass(frozen=True)
class TlsClient:
    """The certificate a node presents to endpoints with client_auth."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Service:
    """One gRPC service of a store: its proto name, listen address and RPC -> operation table."""

    name: str
    listen: Address
    rpcs: Mapping[str, str] = dataclasses.field(default_factory=frozen_map)
    tls: TlsServer | None = None


@dataclass(frozen=True)
class Query:
    """A GraphQL query field answered by a reader RPC (`rpc`), or by the reader's document
    service: a connection over an entity's documents (`list`), one document by key (`get`)."""

    field: str
    rpc: str = ""
    arguments: Mapping[str, str] = dataclasses.field(default_factory=frozen_map)
    result: str | None = None
    list: str | None = None
    get: str | None = None


@dataclass(frozen=True)
class Subscription:
    """A GraphQL subscription field following an entity's changes in the store's change log: one
    document by key (`changed`), or the documents a filter matches (`changes`)."""

    field: str
    changed: str | None = None
    changes: str | None = None

    @property
    def entity(self) -> str:
        return self.changed or self.changes or ""


@dataclass(frozen=True)
class Mutation:
    """A GraphQL mutation field that publishes a command."""

    field: str
    command: str
    arguments: Mapping[str, str] = dataclasses.field(default_factory=frozen_map)
    generate: Mapping[str, str] = dataclasses.field(default_factory=frozen_map)
    exists: str | None = None
    message: str = _default(spec.MUTATION, "message")
    not_found: str = _default(spec.MUTATION, "not_found")


@dataclass(frozen=True)
class PluginRef:
    """A plugin a node uses: its class (dotted path or entry point name) and its settings."""

    use: str
    config: Mapping[str, object] = dataclasses.field(default_factory=frozen_map)


@dataclass(frozen=True)
class SecretSource:
    """Where a secret (a password, a connection URL) is read: an environment variable or a file
    (relative to the topology file). The topology never holds the secret itself."""

    env: str | None = None
    file: Path | None = None

    def __str__(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


@dataclass(frozen=True)
class GrpcClient:
    """A gRPC caller that is not a node of the system (a tool, another system's service): what
    it may call on the node that declares it, and how it proves who it is: a bearer token read
    where `token` says, or a TLS client certificate carrying the name `certificate`."""

    name: str
    call: tuple[str, ...] = ()  # 'package.Service' (each of its RPCs) or 'package.Service/Rpc'
    token: SecretSource | None = None
    certificate: str | None = None

    @property
    def grants(self) -> tuple[tuple[str, str | None], ...]:
        """(service, RPC) for each entry of `call`; RPC None: each RPC of the service."""
        return tuple((c.partition("/")[0], c.partition("/")[2] or None) for c in self.call)

    def may_call(self, service: str, rpc: str) -> bool:
        return any(s == service and r in (None, rpc) for s, r in self.grants)


def _reflection(setting: bool | None, listens: tuple[tuple[str, Address], ...]) -> bool:
    """Whether a gRPC node serves reflection: as set, else only when it listens on loopback."""
    if setting is not None:
        return setting
    from cqrs_flow.topology.exposure import is_loopback

    return all(is_loopback(address.host) for _, address in listens)


@dataclass(frozen=True)
class MongoSettings:
    """A store's MongoDB backend: where its connection URL is read, and the database to use."""

    url: SecretSource
    database: str = _default(spec.MONGODB, "database")


@dataclass(frozen=True)
class Node:
    """Base of every node kind. `dependencies` are the names of the nodes it needs running."""

    name: str
    kind: str = ""
    restart: str = _default(spec.RESTART, "restart")  # never, on-failure or always
    restart_limit: int = _default(spec.RESTART, "restart_limit")
    # Where it serves metrics and health: None, the topology's place (Topology.metrics_of);
    # False, nowhere.
    metrics: Address | bool | None = None

    @property
    def processes(self) -> int:
        """How many processes `up` runs of it (a writer's replicas; none for an external one)."""
        return 0 if self.external else 1

    @property
    def dependencies(self) -> tuple[str, ...]:
        return ()

    @property
    def listens(self) -> tuple[tuple[str, Address], ...]:
        """(what, address) for every listener of the node."""
        return ()

    @property
    def external(self) -> bool:
        """Run by someone else (given by URL): `up` waits for it but does not start it."""
        return False


@dataclass(frozen=True)
class MqttClient:
    """An MQTT user that is not a node (a tool, a dashboard) and the topics it may use."""

    name: str
    publish: tuple[str, ...] = ()  # topic filters
    subscribe: tuple[str, ...] = ()


@dataclass(frozen=True)
class MqttTls:
    """MQTT over TLS: the embedded broker's certificate and key, the CA clients check it against."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class BrokerNode(Node):
    kind: str = "broker"
    listen: Address = Address(*_default(spec.BROKER, "listen"))
    url: str | None = None  # an external broker; `listen` is then unused
    protocol: str = _default(spec.BROKER, "protocol")
    clients: Mapping[str, MqttClient] = dataclasses.field(default_factory=frozen_map)
    tls: MqttTls | None = None
    keep_alive: float = _default(spec.BROKER, "keep_alive")
    connect_timeout: float = _default(spec.BROKER, "connect_timeout")
    reconnect_delay: float = _default(spec.BROKER, "reconnect_delay")

    @property
    def secure(self) -> bool:
        """Whether clients speak TLS to the broker."""
        return self.tls is not None or (self.url or "").startswith("mqtts://")

    @property
    def external(self) -> bool:
        return self.url is not None

    @property
    def address(self) -> Address:
        """Where clients connect: the external broker's URL, or the embedded broker's listener."""
        if self.url is None:
            return self.listen
        rest = self.url.split("://", 1)[1].rstrip("/").rpartition("@")[2]
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]")
            return Address(host, int(port.lstrip(":") or self._default_port))
        host, _, port = rest.partition(":")
        return Address(host, int(port or self._default_port))

    @property
    def _default_port(self) -> int:
        return 8883 if self.url and self.url.startswith("mqtts://") else 1883

    @property
    def listens(self) -> tuple[tuple[str, Address], ...]:
        return () if self.external else (("mqtt", self.listen),)


@dataclass(frozen=True)
class Retention:
    """How much of a store's change log is kept (topology key `retention`): the newest
    `changes` at least, and those younger than `age` seconds; None: no limit of that kind. Both
    None (the default): everything is kept."""

    changes: int | None = None
    age: float | None = None

    @property
    def keeps_everything(self) -> bool:
        return self.changes is None and self.age is None

    def __str__(self) -> str:
        if self.keeps_everything:
            return "keep everything"
        kept = [f"the last {self.changes:,} changes"] if self.changes is not None else []
        if self.age is not None:
            kept.append(f"changes younger than {self.age:g} s")
        return "keep " + " and ".join(kept)


@dataclass(frozen=True)
class RecordRetention:
    """How long and how many records of past commands a node keeps (topology `*_retention`)."""

    time: float = _default(spec.RECORD_RETENTION, "time")
    count: int = _default(spec.RECORD_RETENTION, "count")
    memory_count: int = _default(spec.RECORD_RETENTION, "memory_count")
    cache: int = _default(spec.RECORD_RETENTION, "cache")

    def in_memory(self, on_disk: bool) -> int:
        """How many records are kept in memory: a cache of the most recent with a disk."""
        return self.cache if on_disk else self.memory_count


@dataclass(frozen=True)
class StoreNode(Node):
    kind: str = "store"
    entities: tuple[str, ...] = ()  # the names of the entities it holds (Topology.entities)
    list_limit: int = _default(spec.STORE, "list_limit")
    data: Path | None = None  # directory of the durable store, relative to the topology file
    last_writer_wins: bool = _default(spec.STORE, "last_writer_wins")
    backend: str = _default(spec.STORE, "backend")  # or "mongodb"
    mongodb: MongoSettings | None = None  # with backend "mongodb"
    retention: Retention = Retention()  # of its change log
    applied_retention: RecordRetention = dataclasses.field(default_factory=RecordRetention)
    write: Service = Service("", Address("127.0.0.1", 50051))
    read: Service = Service("", Address("127.0.0.1", 50052))
    reflection: bool | None = None  # None: see serves_reflection

    def service(self, side: str) -> Service:
        return self.write if side == "write" else self.read

    @property
    def serves_reflection(self) -> bool:
        return _reflection(self.reflection, self.listens)

    @property
    def listens(self) -> tuple[tuple[str, Address], ...]:
        return (("write service", self.write.listen), ("read service", self.read.listen))


@dataclass(frozen=True)
class ReadModelSettings:
    """A reader's own read model (topology key `read_model`): the entities it keeps (empty:
    every entity of its store), the staleness bound and read-your-writes wait in seconds, and
    whether it answers from the model while the store cannot be reached."""

    entities: tuple[str, ...] = ()
    staleness: float = _default(spec.READ_MODEL, "staleness")
    wait: float = _default(spec.READ_MODEL, "wait")
    serve_stale: bool = _default(spec.READ_MODEL, "serve_stale")


@dataclass(frozen=True)
class ReaderNode(Node):
    kind: str = "reader"
    listen: Address = Address("127.0.0.1", 50053)
    service: str = ""
    store: Endpoint = Endpoint("store", "read")
    rpcs: Mapping[str, str] = dataclasses.field(default_factory=frozen_map)
    plugins: tuple[PluginRef, ...] = ()
    tls: TlsServer | None = None
    client_tls: TlsClient | None = None
    clients: Mapping[str, GrpcClient] = dataclasses.field(default_factory=frozen_map)
    reflection: bool | None = None  # None: see serves_reflection
    read_model: ReadModelSettings | None = None  # None: every read forwarded to the store
    process: str | None = None  # the gateway whose process it runs in (None: its own)

    @property
    def dependencies(self) -> tuple[str, ...]:
        return (self.store.node,)

    @property
    def serves_reflection(self) -> bool:
        return _reflection(self.reflection, self.listens)

    @property
    def listens(self) -> tuple[tuple[str, Address], ...]:
        return (("grpc", self.listen),)


@dataclass(frozen=True)
class WriterNode(Node):
    kind: str = "writer"
    broker: str = "broker"
    store: Endpoint = Endpoint("store", "write")
    commands: tuple[str, ...] = ()  # by name
    topics: tuple[str, ...] = ()  # topic filters selecting commands by their topic
    delay: float = _default(spec.WRITER, "delay")
    dead_letter: str | None = None
    attempts: int = _default(spec.WRITER, "attempts")
    payload_bytes: int = _default(spec.WRITER, "payload_bytes")
    replicas: int = _default(spec.WRITER, "replicas")
    group: str | None = None  # writers sharing their subscriptions (see share_group)
    plugins: tuple[PluginRef, ...] = ()
    client_tls: TlsClient | None = None

    @property
    def dependencies(self) -> tuple[str, ...]:
        return (self.broker, self.store.node)

    @property
    def processes(self) -> int:
        return self.replicas

    @property
    def share_group(self) -> str | None:
        """The MQTT shared-subscription group it consumes in; None: a subscription of its own."""
        if self.group:
            return self.group
        return self.name if self.replicas > 1 else None


@dataclass(frozen=True)
class Rate:
    """A request rate per caller (topology key `limits.rate`): `requests` per `per` seconds."""

    requests: int
    per: float = _default(spec.RATE, "per")


@dataclass(frozen=True)
class Limits:
    """What one request to a gateway may ask for (topology key `limits`)."""

    body_bytes: int = _default(spec.LIMITS, "body_bytes")
    tokens: int = _default(spec.LIMITS, "tokens")
    depth: int = _default(spec.LIMITS, "depth")
    fields: int = _default(spec.LIMITS, "fields")
    aliases: int = _default(spec.LIMITS, "aliases")
    list_count: int | None = None  # None: see Topology.list_count
    page_size: int = _default(spec.LIMITS, "page_size")
    list_length: int = _default(spec.LIMITS, "list_length")
    string_length: int = _default(spec.LIMITS, "string_length")
    in_flight: int = _default(spec.LIMITS, "in_flight")
    live_subscriptions: int = _default(spec.LIMITS, "live_subscriptions")
    live_queue: int = _default(spec.LIMITS, "live_queue")
    websockets: int = _default(spec.LIMITS, "websockets")
    websockets_per_caller: int = _default(spec.LIMITS, "websockets_per_caller")
    websocket_idle: float = _default(spec.LIMITS, "websocket_idle")
    read_timeout: float = _default(spec.LIMITS, "read_timeout")
    cost: int = _default(spec.LIMITS, "cost")
    timeout: float = _default(spec.LIMITS, "timeout")
    response_bytes: int = _default(spec.LIMITS, "response_bytes")
    per_caller_in_flight: int = _default(spec.LIMITS, "per_caller_in_flight")
    rate: Rate | None = None  # None: no rate limit


@dataclass(frozen=True)
class RoleEntity:
    """What a role sees of an entity: the fields of its GraphQL type it may select (None: all),
    and its row rule: document field -> claim the field must equal."""

    fields: tuple[str, ...] | None = None
    rows: Mapping[str, str] = dataclasses.field(default_factory=frozen_map)


@dataclass(frozen=True)
class RoleLimits:
    """A role's own depth and cost limits (None: the gateway's)."""

    depth: int | None = None
    cost: int | None = None


@dataclass(frozen=True)
class Role:
    """What callers of one role may do (topology key `auth.roles.<name>`): the root fields they
    may run ('*': all), what they see of each entity, the claims mutation arguments must equal
    (mutation -> argument -> claim), their limits."""

    name: str
    queries: tuple[str, ...] = ()
    mutations: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    entities: Mapping[str, RoleEntity] = dataclasses.field(default_factory=frozen_map)
    values: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=frozen_map)
    limits: RoleLimits = RoleLimits()


@dataclass(frozen=True)
class Auth:
    """A gateway's end-user authentication (JWT) and authorization (topology key `auth`): where
    the keys are (a JWKS file or URL, or a secret for HS256), what a token must say, and the
    roles."""

    issuer: str
    audience: tuple[str, ...]
    jwks_file: Path | None = None
    jwks_url: str | None = None
    secret: SecretSource | None = None
    algorithms: tuple[str, ...] = _default(spec.AUTH, "algorithms")
    leeway: float = _default(spec.AUTH, "leeway")
    role_claim: str = _default(spec.AUTH, "role_claim")
    default_role: str | None = None
    anonymous: str | None = None  # None: every request needs a token
    roles: Mapping[str, Role] = dataclasses.field(default_factory=frozen_map)
    jwks_max_age: float = _default(spec.AUTH, "jwks_max_age")
    jwks_min_interval: float = _default(spec.AUTH, "jwks_min_interval")


@dataclass(frozen=True)
class GatewayNode(Node):
    kind: str = "gateway"
    listen: Address = Address(*_default(spec.GATEWAY, "listen"))
    schema: Path = Path("schema.graphql")
    broker: str = "broker"
    reader: str = "reader"
    queries: Mapping[str, Query] = dataclasses.field(default_factory=frozen_map)
    mutations: Mapping[str, Mutation] = dataclasses.field(default_factory=frozen_map)
    subscriptions: Mapping[str, Subscription] = dataclasses.field(default_factory=frozen_map)
    playground: bool = _default(spec.GATEWAY, "playground")
    data: Path | None = None  # directory of the outbox's database, relative to the topology file
    introspection: bool = _default(spec.GATEWAY, "introspection")
    outbox_size: int = _default(spec.GATEWAY, "outbox_size")
    status_retention: RecordRetention = dataclasses.field(default_factory=RecordRetention)
    limits: Limits = dataclasses.field(default_factory=Limits)
    cors_origins: tuple[str, ...] = ()  # none: browsers on other origins may not call the gateway
    trusted_proxies: tuple[str, ...] = ()  # networks whose X-Forwarded-For names the caller
    hosts: tuple[str, ...] = ()  # names clients reach it by, besides its listen address
    auth: Auth | None = None  # None: no end-user tokens, every caller may do everything
    reader_timeout: float = _default(spec.GATEWAY, "reader_timeout")
    redeliver_after: float | None = None  # None: see Topology.redeliver_after
    plugins: tuple[PluginRef, ...] = ()
    client_tls: TlsClient | None = None

    @property
    def dependencies(self) -> tuple[str, ...]:
        return (self.broker, self.reader)

    @property
    def listens(self) -> tuple[tuple[str, Address], ...]:
        return (("http", self.listen),)

    @property
    def url(self) -> str:
        return f"http://{self.listen.target}/graphql"


@dataclass(frozen=True)
class ProjectionNode(Node):
    """Follows a change log (a reader's, or a store's read side) and writes a read model, an
    entity of `store`, with its plugin's handlers; listens on nothing."""

    kind: str = "projection"
    follows: str = "reader"  # a reader node, or a store node (written `<store>.read`)
    store: Endpoint = Endpoint("store", "write")  # where the read model is written
    entity: str = ""  # the read model's entity, held by that store
    plugin: PluginRef = PluginRef("")
    on_error: str = _default(spec.PROJECTION, "on_error")  # stop or set_aside
    batch: int = _default(spec.PROJECTION, "batch")
    client_tls: TlsClient | None = None

    @property
    def plugins(self) -> tuple[PluginRef, ...]:
        """Its plugin, in the form every node's plugins take."""
        return (self.plugin,) if self.plugin.use else ()

    @property
    def dependencies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.follows, self.store.node)))


AnyNode = TypeVar("AnyNode", bound=Node)

# The document service of every store's read side and every reader (its proto ships with
# cqrs-flow: cqrs_flow/protobuf/proto/cqrs_flow/documents.proto).
DOCUMENTS_SERVICE = "cqrs_flow.Documents"
# The change log, beside the document service (changes.proto), and the service projections
# write their read models with, on a store's write side (projections.proto).
CHANGES_SERVICE = "cqrs_flow.Changes"
PROJECTIONS_SERVICE = "cqrs_flow.Projections"
# Several commands in one call of a writer, beside a store's write side (commands.proto).
COMMANDS_SERVICE = "cqrs_flow.Commands"


@dataclass(frozen=True)
class Topology:
    """A whole CQRS system: its commands, its nodes and where its files are."""

    name: str
    source: Path  # the topology file; relative paths in it are relative to its directory
    protos: tuple[Path, ...]
    commands: Mapping[str, Command]
    nodes: Mapping[str, Node]
    entities: Mapping[str, Entity] = dataclasses.field(default_factory=frozen_map)
    command_id: str = _default(spec.TOPOLOGY, "command_id")
    subject: str = _default(spec.TOPOLOGY, "subject")  # the request field of the caller's sub
    status: str | None = None  # as written; see status_topic
    secret: SecretSource | None = None
    plugin_path: tuple[Path, ...] = tuple(map(Path, _default(spec.TOPOLOGY, "plugin_path")))
    project: Path = Path(_default(spec.TOPOLOGY, "root"))  # key `root`; see paths.py
    ready_timeout: float = _default(spec.TOPOLOGY, "ready_timeout")
    stop_timeout: float = _default(spec.TOPOLOGY, "stop_timeout")
    # The first node process's metrics address (key `metrics`); None: off unless a node says.
    metrics: Address | None = Address(*_default(spec.TOPOLOGY, "metrics"))
    located: LocatedData | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def root(self) -> Path:
        """The directory relative paths in the topology are relative to."""
        return self.source.parent

    @property
    def status_topic(self) -> str:
        """Where writers report what became of each command."""
        return self.status or f"{self.name}/status"

    def nodes_of(self, kind: type[AnyNode]) -> list[AnyNode]:
        """The nodes of one kind (BrokerNode, StoreNode, ...), in the order they are written."""
        return [n for n in self.nodes.values() if isinstance(n, kind)]

    def redeliver_after(self, gateway: GatewayNode) -> float:
        """How long a gateway waits for a writer's report before it publishes a command again."""
        if gateway.redeliver_after is not None:
            return gateway.redeliver_after
        delays = [w.delay for m in gateway.mutations.values() for w in self.writers_of(m.command)]
        return max(delays, default=0.0) + 10.0

    def list_count(self, gateway: GatewayNode) -> int:
        """The largest count a gateway passes on to a list query: by default what the store
        behind its reader would return at most anyway."""
        if gateway.limits.list_count is not None:
            return gateway.limits.list_count
        reader = self.nodes.get(gateway.reader)
        store = self.nodes.get(reader.store.node) if isinstance(reader, ReaderNode) else None
        return store.list_limit if isinstance(store, StoreNode) else StoreNode.list_limit

    def commands_of(self, writer: WriterNode) -> list[str]:
        """The commands a writer applies: those it names, and those its topic filters match."""
        from cqrs_flow.topology.topics import matches

        return [
            name
            for name, command in self.commands.items()
            if name in writer.commands or any(matches(f, command.topic) for f in writer.topics)
        ]

    def writers_of(self, command: str) -> list[WriterNode]:
        return [w for w in self.nodes_of(WriterNode) if command in self.commands_of(w)]

    def host_of(self, name: str) -> str:
        """The node whose process runs node `name`: itself, or the gateway a reader names with
        `process` (the two then share a process and call each other without the network)."""
        node = self.nodes.get(name)
        if isinstance(node, ReaderNode) and node.process and node.process in self.nodes:
            return node.process
        return name

    def guests_of(self, name: str) -> list[str]:
        """The nodes run in node `name`'s process besides itself, in the order written."""
        return [n for n in self.nodes if n != name and self.host_of(n) == name]

    def model_entities(self, reader: ReaderNode) -> list[Entity]:
        """The entities a reader keeps in its read model: those its `read_model` names, else
        every entity of its store; none without a read model."""
        if reader.read_model is None:
            return []
        store = self.nodes.get(reader.store.node)
        held = self.entities_of(store) if isinstance(store, StoreNode) else []
        wanted = reader.read_model.entities
        return [e for e in held if e.name in wanted] if wanted else held

    def entities_of(self, store: StoreNode) -> list[Entity]:
        """The entities a store holds, in the order it names them (unknown names: reported by
        checks.py, left out here)."""
        return [self.entities[name] for name in store.entities if name in self.entities]

    def store_holding(self, entity: str) -> StoreNode | None:
        """The store node that holds an entity's documents."""
        return next((s for s in self.nodes_of(StoreNode) if entity in s.entities), None)

    def entity_of_document(self, document: str) -> Entity | None:
        """The entity whose documents are `document` messages (full protobuf name)."""
        return next((e for e in self.entities.values() if e.document == document), None)

    def store_of(self, endpoint: Endpoint) -> StoreNode:
        node = self.nodes[endpoint.node]
        assert isinstance(node, StoreNode), "validated at load time"
        return node

    def callers_of(self, node_name: str) -> dict[str, set[str]]:
        """proto service name -> names of the nodes the topology wires to call it, and of the
        outside clients a reader declares that may call some of its RPCs (which ones:
        GrpcClient.may_call)."""
        node = self.nodes[node_name]
        callers: dict[str, set[str]] = {}
        if isinstance(node, StoreNode):
            sides: tuple[tuple[str, list[WriterNode] | list[ReaderNode]], ...] = (
                ("write", self.nodes_of(WriterNode)),
                ("read", self.nodes_of(ReaderNode)),
            )
            for side, wanted in sides:
                callers[node.service(side).name] = {
                    n.name for n in wanted if n.store == Endpoint(node.name, side)
                }
            callers[DOCUMENTS_SERVICE] = callers[node.read.name]  # served beside the read side
            callers[CHANGES_SERVICE] = callers[node.read.name] | self._followers(node.name)
            callers[COMMANDS_SERVICE] = callers[node.write.name]  # beside the write side
            callers[PROJECTIONS_SERVICE] = {  # served beside the write side
                p.name
                for p in self.nodes_of(ProjectionNode)
                if p.store == Endpoint(node.name, "write")
            }
        elif isinstance(node, ReaderNode):
            callers[node.service] = {
                g.name for g in self.nodes_of(GatewayNode) if g.reader == node.name
            }
            callers[DOCUMENTS_SERVICE] = set(callers[node.service])
            callers[CHANGES_SERVICE] = set(callers[node.service]) | self._followers(node.name)
            for client in node.clients.values():  # outside callers: which RPCs, CallerCheck's
                for service, _ in client.grants:
                    if service in callers:
                        callers[service].add(client.name)
        return callers

    def _followers(self, node_name: str) -> set[str]:
        """The projections that follow the change log of a reader or a store."""
        return {p.name for p in self.nodes_of(ProjectionNode) if p.follows == node_name}

    def projections_into(self, store: StoreNode) -> list[ProjectionNode]:
        """The projections whose read models a store holds."""
        return [p for p in self.nodes_of(ProjectionNode) if p.store.node == store.name]

    def metrics_of(self, name: str, replica: int | None = None) -> Address | None:
        """Where process `replica` (1, 2, ...; None for a node of one process) of node `name`
        serves its metrics and health; None when it serves none. A node without its own
        `metrics` counts up from the topology's, one port per process before it in the file."""
        node = self.nodes.get(name)
        if node is None:  # a node made in code, outside the topology
            return None
        offset = (replica or 1) - 1
        if node.metrics is False:
            return None
        if isinstance(node.metrics, Address):
            return Address(node.metrics.host, node.metrics.port + offset)
        if self.metrics is None:
            return None
        before = 0
        for other in self.nodes.values():
            if other.name == name:
                break
            before += other.processes
        return Address(self.metrics.host, self.metrics.port + before + offset)

    def with_node(self, node: Node) -> Topology:
        """A copy with `node` added or replaced."""
        return replace(self, nodes=frozen_map({**self.nodes, node.name: node}))
