"""Topology file -> checked plain data -> the immutable model, with every problem reported."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.topology import spec
from cqrs_flow.topology.model import (
    Address,
    Auth,
    BrokerNode,
    Command,
    Endpoint,
    Entity,
    GatewayNode,
    GrpcClient,
    Limits,
    MongoSettings,
    MqttClient,
    MqttTls,
    Mutation,
    Node,
    PluginRef,
    ProjectionNode,
    Query,
    Rate,
    ReaderNode,
    ReadModelSettings,
    RecordRetention,
    Relation,
    Retention,
    Role,
    RoleEntity,
    RoleLimits,
    SecretSource,
    Service,
    StoreNode,
    Subscription,
    TlsClient,
    TlsServer,
    Topology,
    WriterNode,
    frozen_map,
)
from cqrs_flow.topology.yamlsource import LocatedData, parse_yaml

__all__ = ["load_topology", "parse_topology"]

MAX_FILE_BYTES = 1_000_000


def load_topology(path: str | Path) -> Topology:
    """Load and check a topology file; raise TopologyError listing every problem in it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TopologyError(
                [
                    Problem(
                        None, "", f"file is {size} bytes; a topology is at most {MAX_FILE_BYTES}"
                    )
                ],
                str(path),
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(
            [Problem(None, "", f"cannot read topology: {exc}")], str(path)
        ) from None
    return parse_topology(text, path)


def parse_topology(text: str, path: Path) -> Topology:
    """Parse topology text as if read from `path` (which anchors its relative paths)."""
    from cqrs_flow.topology.checks import check_wiring  # checks imports the model, not the loader

    source = str(path)
    located = parse_yaml(text, source)
    data, problems = spec.check(located)
    if not isinstance(located.data, dict):
        raise TopologyError(problems, source)  # nothing to build a model from
    topology = _build(data, path.resolve(), located)
    problems += check_wiring(topology)
    if problems:
        raise TopologyError(problems, source)
    return topology


def _build(data: dict[str, Any], path: Path, located: LocatedData) -> Topology:
    commands = {
        # a missing required key was reported; build the rest anyway, to check it too
        name: Command(
            name=name, topic=c.get("topic") or "", rpc=c.get("rpc") or "", key=c.get("key")
        )
        for name, c in (data.get("commands") or {}).items()
    }
    nodes = {name: _node(name, raw) for name, raw in (data.get("nodes") or {}).items()}
    entities = {name: _entity(name, raw) for name, raw in (data.get("entities") or {}).items()}
    _store_entities(nodes, entities, data.get("nodes") or {})
    return Topology(
        name=data["name"],
        source=path,
        protos=tuple(Path(p) for p in data.get("proto") or ()),
        commands=frozen_map(commands),
        nodes=frozen_map(nodes),
        entities=frozen_map(entities),
        command_id=data["command_id"],
        subject=data["subject"],
        status=data.get("status_topic"),
        secret=_secret(data.get("secret")),
        plugin_path=tuple(Path(p) for p in data["plugin_path"] or ()),
        project=Path(data["root"] or "."),
        ready_timeout=data["ready_timeout"],
        stop_timeout=data["stop_timeout"],
        metrics=_address(data["metrics"]) if data.get("metrics") else None,
        located=located,
    )


def _entity(name: str, raw: dict[str, Any]) -> Entity:
    return Entity(
        name=name,
        document=raw.get("document") or "",
        collection=raw.get("collection") or name.lower(),
        key=raw["key"],
        timestamp=raw.get("timestamp"),
        indexes=tuple(raw.get("indexes") or ()),
        relations=frozen_map(
            {
                field: Relation(field, r.get("entity") or "", r.get("key"), r.get("by"))
                for field, r in (raw.get("relations") or {}).items()
            }
        ),
    )


def _store_entities(
    nodes: dict[str, Node], entities: dict[str, Entity], raw_nodes: dict[str, Any]
) -> None:
    """Give each store node its entities: a store that describes its one entity itself
    (`document:`, the form of one-entity topologies) adds that entity, named after its message."""
    stores = [n for n in nodes.values() if isinstance(n, StoreNode)]
    for store in stores:
        raw = raw_nodes.get(store.name) or {}
        if store.entities or not raw.get("document"):
            continue
        name = raw["document"].rpartition(".")[2] or store.name
        if name in entities:
            name = f"{name}_{store.name}"
        entities[name] = Entity(
            name=name,
            document=raw["document"],
            collection=raw.get("collection") or store.name,
            key=raw["key"],
            timestamp=raw.get("timestamp"),
            indexes=tuple(raw.get("indexes") or ()),
            where=("nodes", store.name),
        )
        nodes[store.name] = replace(store, entities=(name,))


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _address(value: tuple[str, int] | None) -> Address | None:
    return Address(*value) if value else None


def _service(raw: dict[str, Any] | None) -> Service:
    raw = raw or {}
    listen = _address(raw.get("listen")) or Address("127.0.0.1", 0)
    return Service(
        name=raw.get("service") or "",
        listen=listen,
        rpcs=frozen_map(raw.get("rpcs")),
        tls=_tls(raw.get("tls")),
    )


def _tls(raw: dict[str, Any] | None) -> TlsServer | None:
    if not raw or not raw.get("cert") or not raw.get("key"):
        return None  # none, or missing keys already reported
    return TlsServer(
        cert=Path(raw["cert"]),
        key=Path(raw["key"]),
        ca=_path(raw.get("ca")),
        client_auth=raw["client_auth"],
        server_name=raw.get("server_name"),
    )


def _client_tls(raw: dict[str, Any]) -> TlsClient | None:
    tls = raw.get("client_tls")
    return (
        TlsClient(Path(tls["cert"]), Path(tls["key"]))
        if tls and tls.get("cert") and tls.get("key")
        else None
    )


def _secret(value: dict[str, str] | None) -> SecretSource | None:
    if not value:
        return None
    return SecretSource(
        env=value.get("env"), file=Path(value["file"]) if value.get("file") else None
    )


def _mongodb(raw: dict[str, Any] | None) -> MongoSettings | None:
    if not raw or not raw.get("url"):
        return None  # missing url: reported by the spec checker
    return MongoSettings(url=_secret(raw["url"]) or SecretSource(), database=raw["database"])


def _endpoint(value: tuple[str, str] | None) -> Endpoint:
    return Endpoint(*value) if value else Endpoint("", "")


def _limits(raw: dict[str, Any]) -> Limits:
    rate = raw.get("rate")
    return Limits(**{**raw, "rate": Rate(**rate) if rate and rate.get("requests") else None})


def _auth(raw: dict[str, Any] | None) -> Auth | None:
    if not raw:
        return None
    jwks = raw.get("jwks") or {}
    return Auth(
        issuer=raw.get("issuer") or "",
        audience=tuple(raw.get("audience") or ()),
        jwks_file=_path(jwks.get("file")),
        jwks_url=jwks.get("url"),
        secret=_secret(raw.get("secret")),
        algorithms=tuple(raw["algorithms"] or ()),
        leeway=raw["leeway"],
        role_claim=raw["role_claim"],
        default_role=raw.get("default_role"),
        anonymous=raw.get("anonymous"),
        roles=frozen_map({name: _role(name, r) for name, r in (raw.get("roles") or {}).items()}),
        jwks_max_age=raw["jwks_max_age"],
        jwks_min_interval=raw["jwks_min_interval"],
    )


def _role(name: str, raw: dict[str, Any]) -> Role:
    limits = raw.get("limits") or {}
    return Role(
        name=name,
        queries=tuple(raw["queries"] or ()),
        mutations=tuple(raw["mutations"] or ()),
        subscriptions=tuple(raw["subscriptions"] or ()),
        entities=frozen_map(
            {
                entity: RoleEntity(
                    tuple(e["fields"]) if e.get("fields") is not None else None,
                    frozen_map(e.get("rows")),
                )
                for entity, e in (raw.get("entities") or {}).items()
            }
        ),
        values=frozen_map(
            {mutation: frozen_map(v) for mutation, v in (raw.get("values") or {}).items()}
        ),
        limits=RoleLimits(limits.get("depth"), limits.get("cost")),
    )


def _plugins(raw: dict[str, Any]) -> tuple[PluginRef, ...]:
    return tuple(
        PluginRef(p["use"], frozen_map(p.get("config")))
        for p in raw.get("plugins") or ()
        if isinstance(p, dict) and p.get("use")
    )


def _node(name: str, raw: dict[str, Any]) -> Node:
    """Build one node from its checked data; missing keys were reported already, so build anyway."""
    kind = raw.get("kind")
    node = _kind_node(name, kind, raw)
    if not node.kind:
        return node
    metrics = raw.get("metrics")
    return replace(
        node,
        restart=raw["restart"],
        restart_limit=raw["restart_limit"],
        metrics=Address(*metrics) if isinstance(metrics, tuple) else metrics,
    )


def _kind_node(name: str, kind: str | None, raw: dict[str, Any]) -> Node:
    if kind == "broker":
        return BrokerNode(
            name=name,
            listen=_address(raw.get("listen")) or Address("127.0.0.1", 0),
            url=raw.get("url"),
            protocol=raw["protocol"],
            keep_alive=raw["keep_alive"],
            connect_timeout=raw["connect_timeout"],
            reconnect_delay=raw["reconnect_delay"],
            clients=frozen_map(
                {
                    user: MqttClient(user, tuple(c["publish"] or ()), tuple(c["subscribe"] or ()))
                    for user, c in (raw.get("clients") or {}).items()
                }
            ),
            tls=MqttTls(
                _path(raw["tls"].get("cert")),
                _path(raw["tls"].get("key")),
                _path(raw["tls"].get("ca")),
            )
            if raw.get("tls")
            else None,
        )
    if kind == "store":
        return StoreNode(
            name=name,
            entities=tuple(raw.get("entities") or ()),
            list_limit=raw["list_limit"],
            data=Path(raw["data"]) if raw.get("data") else None,
            last_writer_wins=raw["last_writer_wins"],
            backend=raw["backend"],
            mongodb=_mongodb(raw.get("mongodb")),
            retention=Retention(**(raw.get("retention") or {})),
            applied_retention=RecordRetention(**(raw.get("applied_retention") or {})),
            write=_service(raw.get("write")),
            read=_service(raw.get("read")),
            reflection=raw.get("reflection"),
        )
    if kind == "reader":
        return ReaderNode(
            name=name,
            listen=_address(raw.get("listen")) or Address("127.0.0.1", 0),
            service=raw.get("service") or "",
            store=_endpoint(raw.get("store")),
            rpcs=frozen_map(raw.get("rpcs")),
            plugins=_plugins(raw),
            tls=_tls(raw.get("tls")),
            client_tls=_client_tls(raw),
            clients=frozen_map(
                {
                    client: GrpcClient(
                        client,
                        tuple(c.get("call") or ()),
                        _secret(c.get("token")),
                        c.get("certificate"),
                    )
                    for client, c in (raw.get("clients") or {}).items()
                }
            ),
            reflection=raw.get("reflection"),
            read_model=_read_model(raw.get("read_model")),
            process=raw.get("process"),
        )
    if kind == "writer":
        return WriterNode(
            name=name,
            broker=raw.get("broker") or "",
            store=_endpoint(raw.get("store")),
            commands=tuple(raw.get("commands") or ()),
            topics=tuple(raw.get("topics") or ()),
            delay=raw["delay"],
            dead_letter=raw.get("dead_letter"),
            attempts=raw["attempts"],
            payload_bytes=raw["payload_bytes"],
            replicas=raw["replicas"],
            group=raw.get("group"),
            plugins=_plugins(raw),
            client_tls=_client_tls(raw),
        )
    if kind == "gateway":
        return GatewayNode(
            name=name,
            listen=_address(raw.get("listen")) or Address("127.0.0.1", 0),
            schema=Path(raw.get("schema") or ""),
            broker=raw.get("broker") or "",
            reader=raw.get("reader") or "",
            queries=frozen_map(
                {
                    field: Query(
                        field=field,
                        rpc=q.get("rpc") or "",
                        arguments=frozen_map(q.get("arguments")),
                        result=q.get("result"),
                        list=q.get("list"),
                        get=q.get("get"),
                    )
                    for field, q in (raw.get("queries") or {}).items()
                    if q.get("rpc") or q.get("list") or q.get("get")
                }
            ),
            mutations=frozen_map(
                {
                    field: Mutation(
                        field=field,
                        command=m["command"],
                        arguments=frozen_map(m.get("arguments")),
                        generate=frozen_map(m.get("generate")),
                        exists=m.get("exists"),
                        message=m["message"],
                        not_found=m["not_found"],
                    )
                    for field, m in (raw.get("mutations") or {}).items()
                    if m.get("command")
                }
            ),
            subscriptions=frozen_map(
                {
                    field: Subscription(field, changed=s.get("changed"), changes=s.get("changes"))
                    for field, s in (raw.get("subscriptions") or {}).items()
                    if s.get("changed") or s.get("changes")
                }
            ),
            playground=raw["playground"],
            data=Path(raw["data"]) if raw.get("data") else None,
            introspection=raw["introspection"],
            outbox_size=raw["outbox_size"],
            status_retention=RecordRetention(**(raw.get("status_retention") or {})),
            limits=_limits(raw.get("limits") or {}),
            cors_origins=tuple((raw.get("cors") or {}).get("origins") or ()),
            trusted_proxies=tuple(raw.get("trusted_proxies") or ()),
            hosts=tuple(raw.get("hosts") or ()),
            auth=_auth(raw.get("auth")),
            reader_timeout=raw["reader_timeout"],
            redeliver_after=raw.get("redeliver_after"),
            plugins=_plugins(raw),
            client_tls=_client_tls(raw),
        )
    if kind == "projection":
        plugin = raw.get("plugin") or {}
        return ProjectionNode(
            name=name,
            follows=raw.get("follows") or "",
            store=_endpoint(raw.get("store")),
            entity=raw.get("entity") or "",
            plugin=PluginRef(plugin.get("use") or "", frozen_map(plugin.get("config"))),
            on_error=raw["on_error"],
            batch=raw["batch"],
            client_tls=_client_tls(raw),
        )
    return Node(name=name)  # an unknown kind, already reported by the checker


def _read_model(raw: dict[str, Any] | None) -> ReadModelSettings | None:
    """A reader's `read_model`, None when it has none or it is switched off."""
    if not raw or not raw.get("enabled"):
        return None
    return ReadModelSettings(
        entities=tuple(raw.get("entities") or ()),
        staleness=raw["staleness"],
        wait=raw["wait"],
        serve_stale=raw["serve_stale"],
    )
