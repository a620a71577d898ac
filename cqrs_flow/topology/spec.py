"""The shape of a topology file: every key, its type and its default, in one table.

`check(data)` walks plain data (from yamlsource) against the table, fills in the defaults and
collects every problem: unknown keys (with a did-you-mean), missing keys, wrong types. The
model is built from its output, so no default lives anywhere else.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cqrs_flow.errors import Problem
from cqrs_flow.topology.problems import KeyPath, Problems, did_you_mean
from cqrs_flow.topology.yamlsource import LocatedData

__all__ = [
    "NODE_KINDS",
    "STORE_OPS",
    "TOPOLOGY",
    "Invalid",
    "check",
    "parse_address",
    "parse_duration",
]


class Invalid(Exception):
    """A value of the wrong type or form; the message says what was expected."""


_MISSING = object()


@dataclass(frozen=True)
class Field:
    type: Callable[[Any], Any] | Section | MapOf | ListOf | ByKind
    required: bool = False
    default: Any = None
    doc: str = ""


# -- scalar types ---------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$"
)
_FULL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_HOST_NAME = re.compile(
    r"^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$"
)


def string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"expected a non-empty string, got {_show(value)}")
    return value


def name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise Invalid(f"expected a name (letters, digits, '_' or '-'), got {_show(value)}")
    return value


def full_name(value: Any) -> str:
    """A protobuf name: package.Message, package.Service or a bare RPC name."""
    if not isinstance(value, str) or not _FULL_NAME.fullmatch(value):
        raise Invalid(f"expected a protobuf name such as 'package.Name', got {_show(value)}")
    return value


def field_path(value: Any) -> str:
    if not isinstance(value, str) or not _FIELD_PATH.fullmatch(value):
        raise Invalid(f"expected a message field path such as 'contact.name', got {_show(value)}")
    return value


def anything(value: Any) -> Any:
    """Any YAML value, passed on as it is (plugin settings)."""
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {_show(value)}")
    return value


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid(f"expected a whole number of at least 1, got {_show(value)}")
    return value


def origin(value: Any) -> str:
    """A web origin allowed to call the gateway from a browser: scheme://host[:port], or '*'."""
    if isinstance(value, str) and (value == "*" or _ORIGIN.fullmatch(value)):
        return value
    raise Invalid(
        f"expected an origin such as https://app.example.com or http://localhost:3000 "
        f"(scheme, host and port only; no path), or '*', got {_show(value)}"
    )


def host_name(value: Any) -> str:
    """A name clients reach a service by: api.example.com, gateway.internal (no port)."""
    if isinstance(value, str) and len(value) <= 253 and _HOST_NAME.fullmatch(value):
        return value
    raise Invalid(
        f"expected a host name such as api.example.com (no scheme, no port), got {_show(value)}"
    )


def parse_duration(value: Any) -> float:
    """3, 3s, 2.5s, 500ms, 1m, 2h, 1d, 7d -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise Invalid(f"expected a duration such as 3s, 500ms or 0, got {_show(value)}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}[unit]


def positive_duration(value: Any) -> float:
    """A duration longer than zero: 10s, 500ms, 1m, 2.5."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise Invalid(
            f"expected a duration longer than zero, such as 10s or 500ms, got {_show(value)}"
        )
    return seconds


def ip_network(value: Any) -> str:
    """An IP address or network: 127.0.0.1, 10.0.0.0/8, ::1, fd00::/8."""
    try:
        if isinstance(value, str):
            return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        pass
    raise Invalid(
        f"expected an IP address or network such as 10.0.0.1 or 10.0.0.0/8, got {_show(value)}"
    )


def parse_address(value: Any) -> tuple[str, int]:
    """'127.0.0.1:1883', 'localhost:8080', '[::1]:50051' or a bare port (host 127.0.0.1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port_text = "127.0.0.1", str(value)
    elif isinstance(value, str) and value.startswith("["):
        host, _, port_text = value[1:].partition("]:")
    elif isinstance(value, str) and ":" in value:
        host, _, port_text = value.rpartition(":")
    else:
        raise Invalid(f"expected host:port such as 127.0.0.1:8080, got {_show(value)}")
    if (
        not host
        or not port_text.isascii()
        or not port_text.isdigit()
        or not 0 < int(port_text) < 65536
    ):
        raise Invalid(f"expected host:port with a port from 1 to 65535, got {_show(value)}")
    return host, int(port_text)


def metrics_listen(value: Any) -> tuple[str, int] | bool:
    """Where a node serves its metrics and health over HTTP: host:port (or a bare port), or
    false for nowhere."""
    if value is False:
        return False
    try:
        return parse_address(value)
    except Invalid:
        raise Invalid(
            f"expected host:port such as 127.0.0.1:9464, or false for no metrics, got "
            f"{_show(value)}"
        ) from None


def topic(value: Any) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise Invalid(f"expected an MQTT topic, got {_show(value)}")
    if "+" in value or "#" in value:
        raise Invalid(f"a command topic is a topic name, not a filter: no '+' or '#' in {value!r}")
    if value.startswith("$"):
        raise Invalid(f"topics starting with '$' are reserved by the broker: {value!r}")
    return value


def topic_filter(value: Any) -> str:
    """A subscription filter: a topic name, or one with '+' and '#' wildcards."""
    from cqrs_flow.topology.topics import filter_problem

    if not isinstance(value, str):
        raise Invalid(f"expected an MQTT topic filter, got {_show(value)}")
    problem = filter_problem(value)
    if problem:
        raise Invalid(problem)
    return value


_URL = re.compile(r"^(mqtts?|tcp)://(?:[^@/]+@)?(\[[0-9A-Fa-f:.]+\]|[^:/@]+)(?::(\d+))?/?$")


def broker_url(value: Any) -> str:
    """mqtt://host[:port] (port 1883 when left out), or mqtts://host[:port] over TLS (port 8883)."""
    match = _URL.fullmatch(value) if isinstance(value, str) else None
    if not match or (match.group(3) and not 0 < int(match.group(3)) < 65536):
        raise Invalid(f"expected a broker URL such as mqtt://127.0.0.1:1883, got {_show(value)}")
    return match.string


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def secret_source(value: Any) -> dict[str, str]:
    """{env: NAME} or {file: path}: where a secret is read. The secret itself is refused, and
    never echoed back in the error (it would land in logs)."""
    if not isinstance(value, dict):
        what = "a value written in clear" if isinstance(value, str) else f"a {type(value).__name__}"
        raise Invalid(
            f"expected {{env: NAME}} or {{file: path}}, got {what}. A secret (a connection URL "
            "may hold a password) is never written in the topology, which is read by anyone "
            "who can read the project: put it in an environment variable and write "
            "{env: MONGODB_URL}, or in a file (chmod 600, outside version control) and "
            "write {file: secrets/mongodb-url}"
        )
    unknown = [str(k) for k in value if k not in ("env", "file")]
    if unknown or len(value) != 1:
        hint = did_you_mean(unknown[0], ("env", "file")) if unknown else ""
        raise Invalid(
            f"expected exactly one of 'env' or 'file', got keys "
            f"{', '.join(map(str, value)) or 'none'}{hint}"
        )
    ((kind, where),) = value.items()
    if kind == "env" and not (isinstance(where, str) and _ENV_NAME.fullmatch(where)):
        raise Invalid(
            f"env: expected the name of an environment variable such as MONGODB_URL, "
            f"got {_show(where) if not isinstance(where, str) else 'a string that is not one'}"
        )
    if kind == "file" and not (isinstance(where, str) and where):
        # where the file may be is the one path rule's business (paths.py, checked by checks.py)
        raise Invalid(f"file: expected a path relative to the topology file, got {_show(where)}")
    return {kind: where}


def endpoint(value: Any) -> tuple[str, str]:
    """'store.write' -> ('store', 'write')."""
    if isinstance(value, str) and value.count(".") == 1:
        node, side = value.split(".")
        if _NAME.fullmatch(node) and side in ("read", "write"):
            return node, side
    raise Invalid(f"expected '<store node>.read' or '<store node>.write', got {_show(value)}")


def follows(value: Any) -> str:
    """What a projection follows: 'reader' (a reader node) or 'store.read' (a store's read side)
    -> the node's name."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    if isinstance(value, str) and value.endswith(".read") and _NAME.fullmatch(value[:-5]):
        return value[:-5]
    raise Invalid(
        f"expected a reader node's name or '<store node>.read', got {_show(value)}"
        + ("; a projection follows a store's read side" if str(value).endswith(".write") else "")
    )


def one_of(*choices: str) -> Callable[[Any], str]:
    def check_choice(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            raise Invalid(f"expected one of {', '.join(choices)}, got {_show(value)}{hint}")
        return value

    check_choice.__name__ = "one of " + ", ".join(choices)
    check_choice.choices = choices  # type: ignore[attr-defined]  # read by the JSON Schema
    return check_choice


def one_or_many(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def check_items(value: Any) -> tuple[Any, ...]:
        values = value if isinstance(value, list) else [value]
        return tuple(item(v) for v in values)

    check_items.item = item  # type: ignore[attr-defined]  # read by the JSON Schema
    return check_items


# -- containers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A mapping with a fixed set of keys. `shorthand` names the key a bare scalar stands for."""

    fields: dict[str, Field]
    shorthand: str | None = None
    doc: str = ""
    filled: bool = False  # left out, it stands for its defaults (else: None)
    one_of: tuple[str, ...] = ()  # keys of which exactly one must be given


@dataclass(frozen=True)
class MapOf:
    """A mapping from user-chosen names to values of one type."""

    value: Any
    key: Callable[[Any], Any] = string


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class ByKind:
    """A mapping whose 'kind' key chooses which Section describes the rest."""

    kinds: dict[str, Section]


# -- the table --------------------------------------------------------------------------------

# Store operations, by the service that may perform them (the one list: contracts bind RPCs to
# these).
WRITE_OPS = ("insert", "update", "delete", "insert_many", "delete_many")
READ_OPS = ("get", "list")
STORE_OPS = WRITE_OPS + READ_OPS
# What a list query may ask of an indexed field (`where: {year: {gte: 1990}}`).
FILTER_OPS = ("eq", "in", "gt", "gte", "lt", "lte", "prefix")


def store_operation(value: Any) -> str:
    """An RPC's store operation: 'insert', or 'Book.insert' to name the entity it is about (needed
    when the store holds several entities and the RPC's messages do not say which)."""
    entity, _, op = value.rpartition(".") if isinstance(value, str) else ("", "", value)
    if op not in STORE_OPS or (entity and not _NAME.fullmatch(entity)):
        hint = did_you_mean(op, STORE_OPS) if isinstance(op, str) else ""
        raise Invalid(
            f"expected a store operation ({', '.join(STORE_OPS)}), or '<Entity>.<operation>' "
            f"such as Book.delete, got {_show(value)}{hint}"
        )
    return str(value)


TLS = Section(
    {
        "cert": Field(
            string,
            required=True,
            doc="the server's certificate chain (PEM file; paths are relative to this file and "
            "inside its directory)",
        ),
        "key": Field(
            string, required=True, doc="its private key (PEM file, readable by its owner only)"
        ),
        "ca": Field(
            string,
            doc="CA certificates (PEM file) callers check the server's certificate against and, "
            "with client_auth, the server checks callers' certificates against "
            "(default for callers: the system's trusted roots)",
        ),
        "client_auth": Field(
            boolean,
            default=False,
            doc="mutual TLS: accept only callers presenting a certificate signed by 'ca' "
            "(their 'client_tls')",
        ),
        "server_name": Field(
            string,
            doc="the name callers expect in the server's certificate "
            "(default: the host callers dial, from 'listen')",
        ),
    }
)

CLIENT_TLS = Section(
    {
        "cert": Field(
            string, required=True, doc="this node's certificate (PEM file, relative to this file)"
        ),
        "key": Field(string, required=True, doc="its private key (PEM file)"),
    }
)

SERVICE = Section(
    {
        "service": Field(
            full_name, required=True, doc="full name of the gRPC service in the protos"
        ),
        "listen": Field(parse_address, required=True, doc="host:port the service listens on"),
        "rpcs": Field(
            MapOf(store_operation, key=full_name),
            required=True,
            doc="RPC name -> store operation, or <Entity>.<operation> where the store holds "
            "several entities and the RPC's messages do not say which (a delete takes only a key)",
        ),
        "tls": Field(TLS, doc="serve over TLS (default: plain-text gRPC, for loopback only)"),
    }
)

COMMAND = Section(
    {
        "topic": Field(topic, required=True, doc="MQTT topic the command is published on"),
        "rpc": Field(full_name, required=True, doc="store write RPC that applies the command"),
        "key": Field(field_path, doc="field path of the entity key in the request message"),
    }
)

QUERY = Section(
    {
        "rpc": Field(full_name, doc="reader RPC that answers the query"),
        "list": Field(
            name,
            doc="an entity: the query is a Relay connection over its documents, paged with "
            "first/after and last/before, filtered with 'where' and ordered with 'orderBy' on "
            "the entity's indexes (instead of 'rpc')",
        ),
        "get": Field(
            name, doc="an entity: the query returns the document whose key is its argument"
        ),
        "arguments": Field(
            MapOf(field_path), default={}, doc="GraphQL argument -> request field path"
        ),
        "result": Field(field_path, doc="response field returned as the query's value"),
    },
    shorthand="rpc",
    one_of=("rpc", "list", "get"),
)

SUBSCRIPTION = Section(
    {
        "changed": Field(
            name,
            doc="an entity: the subscription follows one document, by the key its argument "
            "gives: first the document as it is, then each change of it, in order",
        ),
        "changes": Field(
            name,
            doc="an entity: the subscription follows the documents a filter ('where', on the "
            "entity's indexes) matches: first those there are, then each change that concerns "
            "them, in order",
        ),
    },
    one_of=("changed", "changes"),
)

MUTATION = Section(
    {
        "command": Field(name, required=True, doc="command published by the mutation"),
        "arguments": Field(
            MapOf(field_path), default={}, doc="GraphQL argument -> request field path"
        ),
        "generate": Field(
            MapOf(one_of("uuid"), key=field_path),
            default={},
            doc="request field path -> generated value",
        ),
        "exists": Field(
            full_name,
            doc="reader RPC, or an entity, asked first for the mutation's key; NOT_FOUND "
            "answers ERROR",
        ),
        "message": Field(string, default="Queued", doc="message of an OK answer"),
        "not_found": Field(
            string,
            default="{entity} {id} not found",
            doc="message of an ERROR answer when 'exists' finds nothing",
        ),
    },
    shorthand="command",
)

PLUGIN = Section(
    {
        "use": Field(
            string,
            required=True,
            doc="plugin class: 'package.module.Class', or an entry point name in cqrs_flow.plugins",
        ),
        "config": Field(MapOf(anything), default={}, doc="settings handed to the plugin"),
    },
    shorthand="use",
)

PLUGINS = Field(ListOf(PLUGIN), default=(), doc="plugins hooked into this node, in order")

# Supervision by `up`, the same keys on every kind.
RESTART = {
    "restart": Field(
        one_of("on-failure", "always", "never"),
        default="on-failure",
        doc="when `up` restarts the node after it exits: on-failure (status not 0), "
        "always, or never (then the whole system stops)",
    ),
    "restart_limit": Field(
        positive_int,
        default=5,
        doc="restarts in a row (without 30 s of running in between) before `up` gives up",
    ),
}

# What every kind serves for its operators (docs/OPERATIONS.md).
OPERATIONS = {
    "metrics": Field(
        metrics_listen,
        doc="host:port this node serves Prometheus metrics (/metrics) and its health "
        "(/health/live, /health/ready) on over HTTP, or false for none (default: the "
        "topology's `metrics` address, counted up one port per node process in the order "
        "the nodes are written; a writer's replicas take one port each from this one)",
    ),
}

MQTT_CLIENT = Section(
    {
        "publish": Field(
            one_or_many(topic_filter), default=(), doc="topic filters the client may publish to"
        ),
        "subscribe": Field(
            one_or_many(topic_filter), default=(), doc="topic filters the client may subscribe to"
        ),
    }
)

MQTT_TLS = Section(
    {
        "cert": Field(
            string, doc="the embedded broker's certificate chain (PEM file, relative to this file)"
        ),
        "key": Field(string, doc="its private key (PEM file)"),
        "ca": Field(
            string, doc="CA certificates (PEM file) clients check the broker's certificate against"
        ),
    }
)

BROKER = Section(
    {
        "kind": Field(string, required=True),
        **RESTART,
        **OPERATIONS,
        "listen": Field(
            parse_address,
            default=("127.0.0.1", 1883),
            doc="host:port of the embedded MQTT broker `up` starts",
        ),
        "url": Field(
            broker_url, doc="an external broker (not started by `up`), e.g. mqtt://host:1883"
        ),
        "protocol": Field(
            one_of("3.1.1", "5"),
            default="3.1.1",
            doc="MQTT version clients speak; with 5, writers acknowledge a command only "
            "once it is applied (the embedded broker speaks 3.1.1 only)",
        ),
        "tls": Field(
            MQTT_TLS,
            doc="MQTT over TLS: the embedded broker serves 'cert' and 'key'; clients check "
            "the broker's certificate against 'ca' (default: the system's trusted roots). "
            "An external broker's url may also say mqtts://",
        ),
        "clients": Field(
            MapOf(MQTT_CLIENT, key=name),
            default={},
            doc="MQTT clients besides the nodes (tools, dashboards): user name -> the topics "
            "it may publish and subscribe to; its password is derived from the system "
            "secret (`cqrs-flow mqtt-password`). Nodes log in as their own name",
        ),
        # How fast the nodes' MQTT links notice a dead connection and come back: 3 s brings a
        # link back within 1 to 2.5 s of a 9 s partition, the embedded broker taking the session
        # over from the old connection at once (nodes/broker/sessions.py, docs/RELIABILITY.md).
        "keep_alive": Field(
            positive_duration,
            default=3.0,
            doc="the MQTT keep-alive of the nodes' connections to this broker (whole seconds, "
            "rounded up): a node with nothing to send pings the broker, and gives a connection "
            "it has heard nothing on for twice this up and connects anew (so a link cut off is "
            "replaced within seconds of coming back; see docs/RELIABILITY.md)",
        ),
        "connect_timeout": Field(
            positive_duration,
            default=1.0,
            doc="how long a node waits for a TCP (and TLS) connection to this broker before "
            "trying again: a broker cut off does not hold a node's reconnection for the "
            "seconds the system would wait",
        ),
        "reconnect_delay": Field(
            positive_duration,
            default=0.5,
            doc="the wait between two tries of a node to connect to this broker (it does not "
            "grow: a broker back is reached within this and connect_timeout)",
        ),
    }
)

MONGODB = Section(
    {
        "url": Field(
            secret_source,
            required=True,
            doc="where the connection URL (mongodb:// or mongodb+srv://) is read: {env: NAME} or "
            "{file: path}; never the URL itself, which may hold a password",
        ),
        "database": Field(name, default="cqrs_flow", doc="database holding the store's collection"),
    }
)

RELATION = Section(
    {
        "entity": Field(name, required=True, doc="the related entity"),
        "key": Field(
            name,
            doc="to one: the field of this entity's documents that holds the related "
            "document's key (book.author from author_id)",
        ),
        "by": Field(
            name,
            doc="to many: the field of the related entity's documents that holds this "
            "document's key (author.books by author_id); the GraphQL field is a connection",
        ),
    }
)

ENTITY = Section(
    {
        "document": Field(
            full_name, required=True, doc="protobuf message type of the entity's documents"
        ),
        "collection": Field(name, doc="collection (table) name (default: the entity's name)"),
        "key": Field(name, default="id", doc="document field that is the primary key"),
        "timestamp": Field(name, doc="document field set to RFC 3339 time on every write"),
        "indexes": Field(
            ListOf(name),
            default=(),
            doc="document fields list queries may filter and order on; each is an index in "
            "every backend, created at start",
        ),
        "relations": Field(
            MapOf(RELATION, key=name),
            default={},
            doc="GraphQL field -> the entity it leads to: to one by 'key', to many by 'by'",
        ),
    }
)

# A gRPC caller that is not a node of the system: a tool, another system's service.
GRPC_CLIENT = Section(
    {
        "call": Field(
            one_or_many(string),
            required=True,
            doc="what it may call on this node: 'package.Service' for every RPC of a service "
            "the node serves (its own service, or cqrs_flow.Documents), or "
            "'package.Service/Rpc' for one RPC",
        ),
        "token": Field(
            secret_source,
            doc="where its bearer token is read, {env: NAME} or {file: path} (never the token "
            "itself); it sends the gRPC metadata 'authorization: Bearer <token>'",
        ),
        "certificate": Field(
            string,
            doc="the name in the TLS client certificate it presents (subject common name or a "
            "DNS name); needs this node's tls with client_auth",
        ),
    },
    one_of=("token", "certificate"),
)

REFLECTION = Field(
    boolean,
    doc="serve gRPC server reflection (grpcurl list, Postman) to anyone who reaches the port "
    "(default: on when the node listens on loopback only, off otherwise)",
)

RETENTION = Section(
    {
        "changes": Field(
            positive_int, doc="keep at least the last this many changes (default: no limit)"
        ),
        "age": Field(
            positive_duration,
            doc="keep the changes younger than this, such as 7d or 12h (default: no limit)",
        ),
    },
    doc="how much of the change log is kept; with both, a change goes once either would drop "
    "it. A follower asking for a position no longer kept is refused (OUT_OF_RANGE)",
)

# How long, and how many of, the records a node keeps about past commands (a gateway's command
# statuses, a store's ids of applied commands): on disk with the node's `data`, else in memory.
# The defaults hold a day of 10 commands a second on disk, and bound memory either way.
RECORD_RETENTION = Section(
    {
        "time": Field(
            positive_duration, default=86_400.0, doc="how long a record is kept (default: 1d)"
        ),
        "count": Field(
            positive_int,
            default=1_000_000,
            doc="most records kept on disk (with `data`); the oldest go first",
        ),
        "memory_count": Field(
            positive_int,
            default=100_000,
            doc="without `data`: most records kept (in memory); the oldest go first",
        ),
        "cache": Field(
            positive_int,
            default=10_000,
            doc="with `data`: the most recent records also kept in memory",
        ),
    },
    doc="how long and how many records of past commands are kept",
    filled=True,
)

STORE = Section(
    {
        "kind": Field(string, required=True),
        **RESTART,
        **OPERATIONS,
        "entities": Field(
            ListOf(name),
            doc="the entities whose documents it holds",
        ),
        "document": Field(
            full_name,
            doc="a store of one entity may describe it here instead of under 'entities': "
            "protobuf message type of the stored documents",
        ),
        "collection": Field(name, doc="with 'document': collection name (default: the node name)"),
        "key": Field(
            name, default="id", doc="with 'document': document field that is the primary key"
        ),
        "timestamp": Field(
            name, doc="with 'document': document field set to RFC 3339 time on every write"
        ),
        "indexes": Field(
            ListOf(name), default=(), doc="with 'document': the fields list queries filter on"
        ),
        "list_limit": Field(positive_int, default=1000, doc="most documents one list call returns"),
        "data": Field(
            string,
            doc="directory (relative to this file) where the store keeps its documents "
            "on disk: an SQLite database, each write committed (fsync'ed) before it is "
            "acknowledged; created if missing, private to its owner. Default: none, "
            "the documents live in memory only and are lost when the store stops",
        ),
        "last_writer_wins": Field(
            boolean,
            default=False,
            doc="every write made by a command assigns the key's state and the newest "
            "command on a key wins, whatever order commands arrive in: an update of "
            "a missing document creates it, a delete of a missing one succeeds, an "
            "insert over a live one replaces it. Needed by writer replicas, which "
            "apply one entity's commands side by side. Default: updates and deletes "
            "of missing documents are refused (NOT_FOUND), inserts of taken keys too",
        ),
        "backend": Field(
            one_of("embedded", "mongodb"),
            default="embedded",
            doc="where the documents are: embedded (in the store's process, on disk in "
            "'data' if given) or mongodb (a MongoDB deployment, see 'mongodb'; several "
            "store processes may share it)",
        ),
        "mongodb": Field(MONGODB, doc="the MongoDB backend's settings (with backend: mongodb)"),
        "retention": Field(
            RETENTION,
            doc="how much of the change log the store keeps (default: every change)",
        ),
        "applied_retention": Field(
            RECORD_RETENTION,
            default=None,
            doc="the ids of applied commands and their answers, kept so that a command "
            "delivered again gets the same answer (in 'data' when set)",
        ),
        "write": Field(SERVICE, required=True, doc="the write service"),
        "read": Field(SERVICE, required=True, doc="the read service"),
        "reflection": REFLECTION,
    },
    one_of=("entities", "document"),
)

READ_MODEL = Section(
    {
        "enabled": Field(
            boolean, default=True, doc="keep the read model (false: forward every read)"
        ),
        "entities": Field(
            one_or_many(name),
            default=(),
            doc="the entities it keeps (default: every entity of the reader's store)",
        ),
        "staleness": Field(
            positive_duration,
            default=1.0,
            doc="the most an answer from the read model may lag behind the store: a model that "
            "has not been seen caught up with the store's log for this long answers no more, "
            "the store does (the second hop)",
        ),
        "wait": Field(
            parse_duration,
            default=0.5,
            doc="read-your-writes: how long a read that names a command or a log position "
            "waits for the model to reach it before the store answers it instead",
        ),
        "serve_stale": Field(
            boolean,
            default=True,
            doc="while the store cannot be reached, answer from the model however stale it "
            "is (false: UNAVAILABLE, as a reader without a model)",
        ),
    },
    shorthand="enabled",
    doc="answer reads from a model of the store's documents kept in the reader's memory, "
    "followed from the store's change log (docs/BEHAVIOUR.md, 'The reader's read model'); "
    "`read_model: true` keeps every entity of its store",
)

READER = Section(
    {
        "kind": Field(string, required=True),
        **RESTART,
        **OPERATIONS,
        "listen": Field(parse_address, required=True),
        "service": Field(full_name, required=True, doc="gRPC service the reader serves"),
        "store": Field(endpoint, required=True, doc="'<store>.read': where reads go"),
        "rpcs": Field(
            MapOf(full_name, key=full_name),
            default={},
            doc="reader RPC -> store read RPC (default: the same name)",
        ),
        "tls": Field(TLS, doc="serve over TLS (default: plain-text gRPC, for loopback only)"),
        "client_tls": Field(
            CLIENT_TLS, doc="certificate this node presents to gRPC services with client_auth"
        ),
        "plugins": PLUGINS,
        "clients": Field(
            MapOf(GRPC_CLIENT, key=name),
            default={},
            doc="gRPC clients besides the system's nodes (tools, other systems): client name "
            "-> what it may call and how it proves who it is",
        ),
        "reflection": REFLECTION,
        "read_model": Field(READ_MODEL, doc="answer reads from the reader's own read model"),
        "process": Field(
            name,
            doc="the gateway (the one whose `reader` this is) in whose process this reader "
            "runs: the gateway then calls it without the network (default: a process of its "
            "own)",
        ),
    }
)

WRITER = Section(
    {
        "kind": Field(string, required=True),
        **RESTART,
        **OPERATIONS,
        "broker": Field(name, required=True, doc="broker node the writer subscribes on"),
        "store": Field(endpoint, required=True, doc="'<store>.write': where commands are applied"),
        "commands": Field(
            one_or_many(name), default=(), doc="commands this writer applies, by name"
        ),
        "topics": Field(
            one_or_many(topic_filter),
            default=(),
            doc="or: topic filters ('+' and '#' allowed) selecting the commands it applies",
        ),
        "delay": Field(parse_duration, default=0.0, doc="wait between receiving and applying"),
        "dead_letter": Field(
            topic,
            doc="topic commands that cannot be applied are set aside on, "
            "with the reason (default: only logged)",
        ),
        "attempts": Field(
            positive_int,
            default=5,
            doc="tries of a command that fails unexpectedly before it is set aside "
            "(an unavailable store is waited for, not counted)",
        ),
        "client_tls": Field(
            CLIENT_TLS, doc="certificate this node presents to gRPC services with client_auth"
        ),
        "payload_bytes": Field(
            positive_int,
            default=1024 * 1024,
            doc="largest command payload; larger ones are set aside without decoding",
        ),
        "replicas": Field(
            positive_int,
            default=1,
            doc="processes of this writer that `up` runs; with more than one they share its "
            "subscriptions (MQTT shared subscriptions, so an external broker that has "
            "them), and the store must have last_writer_wins",
        ),
        "group": Field(
            name,
            doc="writers with the same group share their subscriptions: each command goes "
            "to one of them (default: the writer's replicas form a group of their own)",
        ),
        "plugins": PLUGINS,
    }
)

PROJECTION = Section(
    {
        "kind": Field(string, required=True),
        **RESTART,
        **OPERATIONS,
        "follows": Field(
            follows,
            required=True,
            doc="whose change log it follows: a reader node, or a store's read side "
            "('<store>.read')",
        ),
        "store": Field(
            endpoint,
            required=True,
            doc="'<store>.write': the store that holds the read model, written through its "
            "write side together with the position reached",
        ),
        "entity": Field(
            name, required=True, doc="the read model: an entity of that store (its documents)"
        ),
        "plugin": Field(
            PLUGIN,
            required=True,
            doc="the projection's handlers: a ProjectionPlugin class (dotted path or entry "
            "point name), with its config",
        ),
        "on_error": Field(
            one_of("stop", "set_aside"),
            default="stop",
            doc="when a handler raises: stop at that change, naming it (stop), or set it "
            "aside with the error in the store and go on (set_aside)",
        ),
        "batch": Field(
            positive_int,
            default=500,
            doc="most changes whose writes go to the store in one atomic step (while it "
            "catches up; a live projection writes what it has at once)",
        ),
        "client_tls": Field(
            CLIENT_TLS, doc="certificate this node presents to gRPC services with client_auth"
        ),
    }
)

RATE = Section(
    {
        "requests": Field(
            positive_int,
            required=True,
            doc="requests one caller may start per `per` (also the burst it may send at once)",
        ),
        "per": Field(positive_duration, default=1.0, doc="the period `requests` are counted over"),
    },
    doc="a request rate limit per caller",
)

# What one request to a gateway may ask for; over a limit is a GraphQL error, checked before
# anything runs. The defaults leave room for the playground's introspection query.
LIMITS = Section(
    {
        "body_bytes": Field(
            positive_int,
            default=1024 * 1024,
            doc="largest HTTP request body or WebSocket message, in bytes",
        ),
        "tokens": Field(
            positive_int,
            default=10_000,
            doc="most tokens (names, values, punctuation) in one query document",
        ),
        "depth": Field(
            positive_int,
            default=15,
            doc="deepest nesting of fields in a query (fragments expanded)",
        ),
        "fields": Field(
            positive_int, default=500, doc="most fields one operation selects (fragments expanded)"
        ),
        "aliases": Field(positive_int, default=30, doc="most aliases in one operation"),
        "list_count": Field(
            positive_int,
            doc="largest whole-number argument (such as `count`) of a query that returns a "
            "list (default: the list_limit of the store the gateway's reader reads); a "
            "connection's first and last too",
        ),
        "page_size": Field(
            positive_int,
            default=20,
            doc="how many documents a connection returns when the query gives neither "
            "first nor last",
        ),
        "list_length": Field(
            positive_int, default=1000, doc="most items in one list argument or variable"
        ),
        "string_length": Field(
            positive_int, default=10_000, doc="longest string argument or variable, in characters"
        ),
        "in_flight": Field(
            positive_int,
            default=100,
            doc="requests the gateway works on at once; more are refused at once (HTTP 503)",
        ),
        "websockets": Field(
            positive_int,
            default=200,
            doc="WebSocket connections open at once; more are refused at once (HTTP 503)",
        ),
        "websockets_per_caller": Field(
            positive_int,
            default=20,
            doc="WebSocket connections one caller (a client address) may have open at once; "
            "more are refused at once (HTTP 429)",
        ),
        "live_subscriptions": Field(
            positive_int,
            default=1000,
            doc="live subscriptions (to entity changes) the gateway serves at once; more are "
            "refused at once (BUSY)",
        ),
        "live_queue": Field(
            positive_int,
            default=1000,
            doc="changes a live subscriber may fall behind by; one further behind is closed "
            "with an error (SLOW_CONSUMER) naming the position to resume after",
        ),
        "websocket_idle": Field(
            positive_duration,
            default=60.0,
            doc="a WebSocket with no operation running for this long is closed (code 1000)",
        ),
        "read_timeout": Field(
            positive_duration,
            default=10.0,
            doc="longest a client may take to send a request's headers, and again its body; "
            "also how long an idle keep-alive connection stays open",
        ),
        "cost": Field(
            positive_int,
            default=10_000,
            doc="largest cost of one operation, counted on the parsed query before it runs: "
            "each object 1 (scalars 0), and a field returning a list multiplies the cost of "
            "each item by the list's size (its whole-number argument such as `count`, "
            "else list_count); aliases count each, fragments where they are spread",
        ),
        "timeout": Field(
            positive_duration,
            default=10.0,
            doc="longest one query or mutation may run; then it is cut off with an error",
        ),
        "response_bytes": Field(
            positive_int,
            default=4 * 1024 * 1024,
            doc="largest answer, in bytes of JSON; a larger one is replaced by an "
            "error, never cut short",
        ),
        "per_caller_in_flight": Field(
            positive_int,
            default=10,
            doc="requests one caller (a client address) may have in flight "
            "at once; more are refused at once (HTTP 429)",
        ),
        "rate": Field(
            RATE,
            doc="requests one caller may start, a token bucket per caller; over it, "
            "HTTP 429 with Retry-After (default: no rate limit)",
        ),
    },
    doc="limits on what one request may ask for",
    filled=True,
)

# End-user tokens (JWT): what the gateway accepts, and what each role may do.
JWT_ALGORITHMS = ("RS256", "ES256", "EdDSA", "HS256")
_CLAIM = re.compile(r"^[A-Za-z_][A-Za-z0-9_:-]*(\.[A-Za-z_][A-Za-z0-9_:-]*)*$")
_JWKS_URL = re.compile(
    r"^(https://[^\s/?#]+|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?)(/[^\s#]*)?$"
)


def claim(value: Any) -> str:
    """A claim of an end-user token, by name or dotted path: sub, role, org.id."""
    if isinstance(value, str) and _CLAIM.fullmatch(value):
        return value
    raise Invalid(f"expected the name of a token claim such as sub or org.id, got {_show(value)}")


def operation_names(value: Any) -> tuple[str, ...]:
    """GraphQL root fields a role may run: a list of names, one name, or '*' for all."""
    values = value if isinstance(value, list) else [value]
    for item in values:
        if not isinstance(item, str) or not (item == "*" or re.fullmatch(r"[_A-Za-z]\w*", item)):
            raise Invalid(
                f"expected GraphQL field names such as [books, book], or '*' for all, "
                f"got {_show(item)}"
            )
    return tuple(values)


def jwks_source(value: Any) -> dict[str, str]:
    """{file: path} or {url: https://...}: where the gateway reads the public keys (a JWKS)."""
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("file", "url"):
        keys = ", ".join(map(str, value)) if isinstance(value, dict) else _show(value)
        hint = (
            did_you_mean(next(iter(value)), ("file", "url"))
            if isinstance(value, dict) and value
            else ""
        )
        raise Invalid(
            f"expected {{file: path}} (a JWKS file in the project) or {{url: https://...}} "
            f"(the issuer's JWKS), got {keys}{hint}"
        )
    ((kind, where),) = value.items()
    if kind == "url" and not (isinstance(where, str) and _JWKS_URL.fullmatch(where)):
        raise Invalid(
            f"url: expected an https:// URL (http:// only on this machine: 127.0.0.1, "
            f"localhost, [::1]), got {_show(where)}"
        )
    if kind == "file" and not (isinstance(where, str) and where):
        raise Invalid(f"file: expected a path relative to the topology file, got {_show(where)}")
    return {kind: where}


ROLE_ENTITY = Section(
    {
        "fields": Field(
            one_or_many(string),
            doc="the fields of the entity's GraphQL type the role may select (its relations "
            "too); any other is refused (FORBIDDEN). Default: all",
        ),
        "rows": Field(
            MapOf(claim, key=string),
            default={},
            doc="document field -> claim: the role sees only the documents whose field equals "
            "the token's claim (e.g. {member: sub}), in every list, lookup, relation and "
            "exists check, applied in the store's query; the field must be indexed",
        ),
    },
    doc="what a role sees of an entity",
)

ROLE_LIMITS = Section(
    {
        "depth": Field(positive_int, doc="deepest nesting of fields (default: limits.depth)"),
        "cost": Field(positive_int, doc="largest cost of one operation (default: limits.cost)"),
    },
    doc="tighter limits for this role (the gateway's own limits hold for every caller)",
)

ROLE = Section(
    {
        "queries": Field(
            operation_names, default=(), doc="Query fields the role may run ('*': all)"
        ),
        "mutations": Field(
            operation_names, default=(), doc="Mutation fields the role may run ('*': all)"
        ),
        "subscriptions": Field(
            operation_names, default=(), doc="Subscription fields the role may run ('*': all)"
        ),
        "entities": Field(
            MapOf(ROLE_ENTITY, key=name),
            default={},
            doc="entity -> the fields the role may see and the documents (rows) it sees",
        ),
        "values": Field(
            MapOf(MapOf(claim, key=string), key=string),
            default={},
            doc="mutation -> {argument: claim}: the argument must equal the token's claim "
            "(e.g. lendBook: {member: sub}), else FORBIDDEN",
        ),
        "limits": Field(ROLE_LIMITS, doc="depth and cost limits of this role"),
    },
    doc="what callers of one role may do",
)

AUTH = Section(
    {
        "jwks": Field(
            jwks_source,
            doc="the public keys tokens are signed with: {file: path} (a JWKS file in the "
            "project) or {url: https://...} (the issuer's JWKS, cached)",
        ),
        "secret": Field(
            secret_source,
            doc="HS256 only: where the shared secret is read, {env: NAME} or {file: path} "
            "(at least 32 bytes); never the secret itself",
        ),
        "algorithms": Field(
            one_or_many(one_of(*JWT_ALGORITHMS)),
            default=("RS256", "ES256", "EdDSA"),
            doc="the signature algorithms accepted; any other (and 'none') is refused",
        ),
        "issuer": Field(string, required=True, doc="the `iss` every token must have"),
        "audience": Field(
            one_or_many(string),
            required=True,
            doc="the `aud` a token must name (one of these)",
        ),
        "leeway": Field(
            parse_duration,
            default=30.0,
            doc="clock skew allowed when checking `exp` and `nbf`",
        ),
        "role_claim": Field(
            claim,
            default="role",
            doc="the claim that names the caller's role (a string, or a list: the first "
            "that is a role here)",
        ),
        "default_role": Field(
            name,
            doc="the role of a token whose role claim names no role here (default: none, "
            "such a token is refused, FORBIDDEN)",
        ),
        "anonymous": Field(
            name,
            doc="the role of a request without a token (default: none, every request needs "
            "a token, UNAUTHENTICATED)",
        ),
        "roles": Field(
            MapOf(ROLE, key=name),
            default={},
            doc="role -> what its callers may do (none: every valid token may do everything)",
        ),
        "jwks_max_age": Field(
            positive_duration,
            default=600.0,
            doc="keys read from a JWKS URL are fetched again when older than this",
        ),
        "jwks_min_interval": Field(
            positive_duration,
            default=30.0,
            doc="a token naming a key id not in the JWKS makes the gateway fetch the URL "
            "again, at most once per this long",
        ),
    },
    doc="end-user authentication (JWT) and authorization rules per role",
)

CORS = Section(
    {
        "origins": Field(
            one_or_many(origin),
            default=(),
            doc="web origins whose pages may call the gateway ('*' for any)",
        ),
    },
    doc="cross-origin requests from browsers (off unless origins are listed)",
    filled=True,
)

GATEWAY = Section(
    {
        "kind": Field(string, required=True),
        **RESTART,
        **OPERATIONS,
        "listen": Field(parse_address, default=("127.0.0.1", 8080)),
        "schema": Field(string, required=True, doc="GraphQL SDL file"),
        "broker": Field(name, required=True, doc="broker node mutations publish on"),
        "reader": Field(name, required=True, doc="reader node queries go to"),
        "queries": Field(MapOf(QUERY), default={}, doc="Query field -> reader RPC"),
        "mutations": Field(MapOf(MUTATION), default={}, doc="Mutation field -> command"),
        "subscriptions": Field(
            MapOf(SUBSCRIPTION),
            default={},
            doc="Subscription field -> the entity whose changes it follows (live, from the "
            "store's change log)",
        ),
        "playground": Field(boolean, default=True, doc="serve the GraphQL IDE on GET /"),
        "data": Field(
            string,
            doc="directory (relative to this file) where the gateway keeps its outbox "
            "(commands not yet reported applied) in an SQLite database, committed "
            "(fsync'ed) before a mutation is answered, so they are published again "
            "after a crash of the gateway and the broker; created if missing. "
            "Default: none, the outbox is in memory only",
        ),
        "outbox_size": Field(
            positive_int,
            default=100_000,
            doc="most commands waiting in the outbox for a writer's report; beyond it "
            "mutations are refused ('the outbox is full')",
        ),
        "status_retention": Field(
            RECORD_RETENTION,
            default=None,
            doc="command statuses (commandStatus), kept in 'data' when set",
        ),
        "introspection": Field(
            boolean,
            default=True,
            doc="answer __schema and __type queries (the playground needs them); "
            "switch off in production",
        ),
        "limits": Field(LIMITS, default=None, doc="limits on what one request may ask for"),
        "trusted_proxies": Field(
            one_or_many(ip_network),
            default=(),
            doc="addresses or networks of reverse proxies in front of the "
            "gateway: for a request from one of them, the caller that "
            "per-caller limits count is the last X-Forwarded-For address "
            "that is no trusted proxy (default: none; the caller is the "
            "peer address)",
        ),
        "cors": Field(
            CORS, default=None, doc="browser pages on other origins allowed to call the gateway"
        ),
        "auth": Field(
            AUTH,
            doc="end-user tokens (JWT) and what each role may do (default: none, every "
            "caller may run every operation)",
        ),
        "hosts": Field(
            one_or_many(host_name),
            default=(),
            doc="host names clients reach the gateway by, besides its listen address, "
            "localhost and IP addresses; requests naming another host are refused (421)",
        ),
        "redeliver_after": Field(
            parse_duration,
            doc="publish a command again when no writer has reported on it for this long "
            "(default: 10 s more than the longest write delay)",
        ),
        "reader_timeout": Field(
            parse_duration,
            default=5.0,
            doc="how long a query waits for the reader before answering an error",
        ),
        "client_tls": Field(
            CLIENT_TLS, doc="certificate this node presents to gRPC services with client_auth"
        ),
        "plugins": PLUGINS,
    }
)

NODE_KINDS = {
    "broker": BROKER,
    "store": STORE,
    "reader": READER,
    "writer": WRITER,
    "gateway": GATEWAY,
    "projection": PROJECTION,
}

TOPOLOGY = Section(
    {
        "name": Field(name, default="cqrs-flow", doc="system name; prefixes MQTT client ids"),
        "root": Field(
            string,
            default=".",
            doc="the project directory, relative to this file: its directory or one above it "
            "(e.g. ..); no path in this file may lead out of it",
        ),
        "proto": Field(
            one_or_many(string), required=True, doc=".proto files, relative to this file"
        ),
        "commands": Field(
            MapOf(COMMAND, key=name), required=True, doc="command name -> topic and RPC"
        ),
        "entities": Field(
            MapOf(ENTITY, key=name),
            default={},
            doc="entity (its GraphQL type name) -> its documents, key, indexes and relations",
        ),
        "nodes": Field(MapOf(ByKind(NODE_KINDS), key=name), required=True),
        "command_id": Field(
            name,
            default="command_id",
            doc="request field the gateway puts each command's id in, where the request "
            "message has such a field (the store then applies each id once)",
        ),
        "subject": Field(
            name,
            default="subject",
            doc="request field the gateway puts the caller's subject in (the `sub` of its "
            "token; empty without one), where the request message has such a field, so "
            "that writer, store and command status know who asked",
        ),
        "status_topic": Field(
            topic,
            doc="topic writers report applied and failed commands on, for the "
            "gateways (default: <name>/status)",
        ),
        "secret": Field(
            secret_source,
            doc="where the system secret that every node credential (gRPC tokens, MQTT "
            "passwords) derives from is read: {env: NAME} or {file: path}, never the "
            "secret itself. Default: $CQRS_FLOW_SECRET, else `up` makes a new one per run. "
            "$CQRS_FLOW_SECRET, when set, wins",
        ),
        "plugin_path": Field(
            one_or_many(string),
            default=(".",),
            doc="directories, relative to this file, that plugins are imported from",
        ),
        "ready_timeout": Field(
            parse_duration, default=30.0, doc="how long a node may take to be ready"
        ),
        "metrics": Field(
            metrics_listen,
            default=("127.0.0.1", 9464),
            doc="where the first node process serves Prometheus metrics and its health over "
            "HTTP; each next one (in the order the nodes are written, a writer's replicas "
            "one each, external brokers none) on the next port. false: no node serves them "
            "unless its own `metrics` says where",
        ),
        "stop_timeout": Field(
            parse_duration,
            default=5.0,
            doc="grace period between SIGTERM and SIGKILL when stopping",
        ),
    }
)


# -- the checker ------------------------------------------------------------------------------


def check(located: LocatedData) -> tuple[dict[str, Any], list[Problem]]:
    """Check located data against TOPOLOGY; return it with defaults filled in, and the problems."""
    checker = _Checker(located)
    result = checker.section(TOPOLOGY, located.data, ())
    return (result if isinstance(result, dict) else {}), checker.report.problems


class _Checker:
    def __init__(self, located: LocatedData) -> None:
        self.report = Problems(located)

    def value(self, kind: Any, value: Any, path: KeyPath) -> Any:
        if isinstance(kind, Section):
            return self.section(kind, value, path)
        if isinstance(kind, MapOf):
            return self.mapping(kind, value, path)
        if isinstance(kind, ListOf):
            if not isinstance(value, list):
                self.report(path, f"expected a list, got {_show(value)}")
                return _MISSING
            items = [self.value(kind.item, v, path + (i,)) for i, v in enumerate(value)]
            return tuple(i for i in items if i is not _MISSING)
        if isinstance(kind, ByKind):
            return self.by_kind(kind, value, path)
        try:
            return kind(value)
        except Invalid as exc:
            self.report(path, str(exc))
            return _MISSING

    def section(self, section: Section, value: Any, path: KeyPath) -> Any:
        if section.shorthand and not isinstance(value, dict):
            value = {section.shorthand: value}
        if not isinstance(value, dict):
            self.report(
                path, f"expected a mapping of {', '.join(section.fields)}, got {_show(value)}"
            )
            return _MISSING
        out: dict[str, Any] = {}
        for key in value:
            if key not in section.fields:
                hint = did_you_mean(key, section.fields)
                self.report(
                    path + (key,),
                    f"unknown key{hint or '; expected one of ' + ', '.join(section.fields)}",
                )
        given = [key for key in section.one_of if key in value]
        if section.one_of and len(given) != 1:
            keys = " or ".join(f"'{k}'" for k in section.one_of)
            first = section.fields[section.one_of[0]]
            self.report(
                path,
                f"give only one of {keys}"
                if given
                else f"missing a required key: '{section.one_of[0]}' ({first.doc}) or "
                + " or ".join(f"'{k}'" for k in section.one_of[1:]),
            )
        for key, spec in section.fields.items():
            if key in value:
                checked = self.value(spec.type, value[key], path + (key,))
                # An invalid value was reported; stand in its default so the model can still be
                # built and checked further (nothing runs from a topology with problems).
                out[key] = spec.default if checked is _MISSING else checked
            elif spec.required:
                self.report(
                    path, f"missing required key '{key}'" + (f" ({spec.doc})" if spec.doc else "")
                )
            elif isinstance(spec.type, Section) and spec.type.filled and spec.default is None:
                out[key] = self.section(
                    spec.type, {}, path + (key,)
                )  # a section left out: its defaults
            else:
                out[key] = spec.default
        return out

    def mapping(self, kind: MapOf, value: Any, path: KeyPath) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping, got {_show(value)}")
            return _MISSING
        out = {}
        for key, item in value.items():
            try:
                checked_key = kind.key(key)
            except Invalid as exc:
                self.report(path + (key,), f"bad name: {exc}")
                continue
            checked = self.value(kind.value, item, path + (key,))
            if checked is not _MISSING:
                out[checked_key] = checked
        return out

    def by_kind(self, kind: ByKind, value: Any, path: KeyPath) -> Any:
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping with a 'kind' key, got {_show(value)}")
            return _MISSING
        node_kind = value.get("kind")
        if not isinstance(node_kind, str) or node_kind not in kind.kinds:
            hint = did_you_mean(node_kind, kind.kinds) if isinstance(node_kind, str) else ""
            where = path + ("kind",) if "kind" in value else path
            self.report(
                where,
                f"{'unknown' if 'kind' in value else 'missing'} kind"
                f"{' ' + _show(node_kind) if 'kind' in value else ''}{hint}; "
                f"expected one of {', '.join(kind.kinds)}",
            )
            return {"kind": None}  # keeps the node known, so references to it are not reported too
        return self.section(kind.kinds[node_kind], value, path)


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
