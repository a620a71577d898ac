"""Plugins: business logic hooked into readers, gateways and writers.

A topology names the plugins a node uses:

    plugins:
      - plugins.contacts.NameRules                # a class, by dotted path
      - {use: name-rules, config: {max_length: 80}}  # an entry point in group cqrs_flow.plugins

A plugin subclasses the base class of the node kind it serves:

- ReaderPlugin: serves reader RPCs. A method named like an RPC of the reader's service,
  `async def ReverseName(self, request, context)`, answers that RPC (in place of forwarding it
  to the store); `self.context.store` calls the store's read service.
- GatewayPlugin: `async def before_publish(self, mutation, command, arguments)` runs before a
  mutation's command is published; raise Rejected("why") to answer ERROR with that message and
  publish nothing, or change `command` in place to enrich it.
- WriterPlugin: `async def before_apply(self, command_name, command)` runs before a command is
  applied; raise Rejected to set it aside, or change it in place.
- ProjectionPlugin: builds a read model from the change log, one handler per entity and kind of
  change, `async def on_<Entity>_<op>(self, event, model)` (op: insert, update or delete; or
  `on_<Entity>` for every kind), reading and writing the read model through `model`. Plain
  Python: a test calls `handle` with a MemoryReadModel, no process needed.

`start()` and `stop()` run with the node. A plugin that cannot be imported, is of the wrong
kind, or raises, is reported with its name.

Who is calling: inside a gateway's request (a hook such as before_publish, or anything a
resolver calls), `caller()` is the request's Caller: the subject (`sub`) and role of its token
and all its claims, verified by the gateway (topology key `auth`); an anonymous Caller (no
subject, no claims) for a request without a token; None outside a request. It is a context
variable set per request, so hooks keep their signatures:

    from cqrs_flow.plugins import GatewayPlugin, Rejected, caller

    class OnlyOwnNotes(GatewayPlugin):
        async def before_publish(self, mutation, command, arguments):
            who = caller()
            if who is None or who.subject is None:
                raise Rejected("sign in first")
"""

from __future__ import annotations

import contextvars
import copy
import importlib
import importlib.metadata
import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from cqrs_flow.errors import CqrsFlowError
from cqrs_flow.topology.model import (
    GatewayNode,
    Node,
    PluginRef,
    ProjectionNode,
    ReaderNode,
    Topology,
    WriterNode,
)
from cqrs_flow.topology.paths import project_path

if TYPE_CHECKING:
    from cqrs_flow.protobuf.compiler import ProtoSet
    from cqrs_flow.transport.rpc import ServiceClient

__all__ = [
    "CALLER",
    "CHANGE_OPS",
    "ENTRY_POINT_GROUP",
    "Caller",
    "Event",
    "GatewayPlugin",
    "MemoryReadModel",
    "Plugin",
    "PluginContext",
    "PluginError",
    "ProjectionPlugin",
    "ReadModel",
    "ReaderPlugin",
    "Rejected",
    "WriterPlugin",
    "caller",
    "load_plugin_class",
    "start_plugins",
]

ENTRY_POINT_GROUP = "cqrs_flow.plugins"


@dataclass(frozen=True)
class Caller:
    """Who sent the request being served: the `sub` of its token (None without a token), its
    role under the gateway's rules (None when the gateway has no roles), every claim of the
    token, and when the token expires (seconds since the epoch; None without a token)."""

    subject: str | None = None
    role: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires: float | None = None

    @property
    def anonymous(self) -> bool:
        return self.subject is None

    def claim(self, path: str) -> Any:
        """The claim at a dotted `path` (`org.id`), None if the token has none."""
        value: Any = self.claims
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value


# The caller of the request being served; the gateway sets it per request (tasks inherit it).
CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def caller() -> Caller | None:
    """The caller of the request being served (see the module); None outside a request."""
    return CALLER.get()


class PluginError(CqrsFlowError):
    """A plugin that cannot be loaded or used."""


class Rejected(Exception):
    """Raised by a hook to refuse a command; the message is what the client (or log) is told."""


@dataclass
class PluginContext:
    """What a plugin can use: its node, the topology, the compiled protos and a logger.
    A reader's plugins also get `store`, a client of the store's read service."""

    topology: Topology
    node: Node
    protos: ProtoSet
    log: logging.Logger
    store: ServiceClient | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def message_class(self, full_name: str) -> type[Message]:
        return self.protos.message_class(full_name)


class Plugin:
    """Base of every plugin. `config` is the plugin's `config` mapping from the topology."""

    kind = ""  # the node kind it serves

    def __init__(self, context: PluginContext, config: Mapping[str, Any]) -> None:
        self.context = context
        self.config = dict(config)

    @property
    def name(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}"

    async def start(self) -> None:
        """Called once the node is set up, before it serves anything."""

    async def stop(self) -> None:
        """Called when the node stops."""


class ReaderPlugin(Plugin):
    """Answers reader RPCs with methods named like them: `async def Rpc(self, request, context)`."""

    kind = "reader"

    @classmethod
    def serves(cls, rpc: str) -> bool:
        return callable(getattr(cls, rpc, None)) and not hasattr(Plugin, rpc)


class GatewayPlugin(Plugin):
    kind = "gateway"

    async def before_publish(
        self, mutation: str, command: Message, arguments: Mapping[str, Any]
    ) -> None:
        """Check or enrich a command before it is published; raise Rejected to refuse it."""


class WriterPlugin(Plugin):
    kind = "writer"

    async def before_apply(self, command_name: str, command: Message) -> None:
        """Check or enrich a command before it is applied; raise Rejected to set it aside."""


# -- projections ----------------------------------------------------------------------------------

CHANGE_OPS = ("insert", "update", "delete")


@dataclass(frozen=True)
class Event:
    """A change of the log, as a projection's handler gets it. `op` says what happened to the
    key: insert (it had no document), update (it had one and has another), delete (it has none
    now). `document` is the document after the change (None for a delete), `previous` the one
    before (None for an insert), each as the store keeps it: the message's fields by their
    proto names, enums by name. `at` is when the store made it (RFC 3339)."""

    position: int
    entity: str
    key: str
    op: str
    document: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    command_id: str = ""
    at: str = ""
    subject: str = ""

    def __str__(self) -> str:
        command = f", command {self.command_id}" if self.command_id else ""
        return f"change {self.position} ({self.op} of {self.entity} '{self.key}'{command})"


class ReadModel(ABC):
    """What a handler reads and writes: the read model's documents by key (fields by proto
    names, as in Event). Writes are kept until the projection writes them to the store, with the
    position of the change they come from; `get` sees them at once."""

    @abstractmethod
    async def get(self, key: str) -> dict[str, Any] | None:
        """The key's document (a copy: change it and `put` it back), or None."""

    @abstractmethod
    def put(self, key: str, document: dict[str, Any]) -> None:
        """The key's document is `document` now (all of it: a field left out is its default)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """The key has no document now (nothing happens if it had none)."""


class MemoryReadModel(ReadModel):
    """A read model in a dict: for tests of a projection's handlers, and what the projection
    node keeps the writes of a batch in."""

    def __init__(self, documents: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.documents: dict[str, dict[str, Any]] = {
            k: copy.deepcopy(v) for k, v in (documents or {}).items()
        }

    async def get(self, key: str) -> dict[str, Any] | None:
        found = self.documents.get(key)
        return None if found is None else copy.deepcopy(found)

    def put(self, key: str, document: dict[str, Any]) -> None:
        self.documents[key] = copy.deepcopy(document)

    def delete(self, key: str) -> None:
        self.documents.pop(key, None)


class ProjectionPlugin(Plugin):
    """Builds a read model from the change log: `async def on_<Entity>_<op>(self, event, model)`
    handles one kind of change of one entity (op: insert, update or delete), and
    `on_<Entity>(self, event, model)` every kind the more precise ones leave. The projection
    follows the changes of the entities it has handlers for, and nothing else.

    A handler acts on `model` only, and gives the same writes for the same changes and model:
    the projection may run it more than once over the same changes before their writes are
    stored (it reads the documents a batch's handlers ask for together, then handles the batch
    again), and a replay runs it over every change again. A handler that raises stops the
    projection at that change (or sets it aside, with `on_error: set_aside`); what it wrote to
    `model` before raising is dropped."""

    kind = "projection"

    def __init__(
        self, context: PluginContext | None = None, config: Mapping[str, Any] | None = None
    ) -> None:
        """A node makes it with its context; a test may make it with neither (`Plugin()`), or
        with a config only."""
        super().__init__(context, config or {})  # type: ignore[arg-type]  # None: in a test
        self._handlers = self.handlers()

    @classmethod
    def handlers(cls) -> dict[tuple[str, str | None], str]:
        """(entity, op or None for every op) -> the handler's method name."""
        found: dict[tuple[str, str | None], str] = {}
        for name in dir(cls):
            if not name.startswith("on_") or not callable(getattr(cls, name, None)):
                continue
            entity, _, op = name[3:].rpartition("_")
            if entity and op in CHANGE_OPS:
                found[(entity, op)] = name
            else:
                found[(name[3:], None)] = name
        return found

    @classmethod
    def entities(cls) -> list[str]:
        """The entities it handles changes of, sorted."""
        return sorted({entity for entity, _ in cls.handlers()})

    async def handle(self, event: Event, model: ReadModel) -> bool:
        """Run the handler of the event's entity and op; whether there was one."""
        handlers = self._handlers
        name = handlers.get((event.entity, event.op)) or handlers.get((event.entity, None))
        if name is None:
            return False
        await getattr(self, name)(event, model)
        return True


_BASES: dict[type[Node], type[Plugin]] = {
    ReaderNode: ReaderPlugin,
    GatewayNode: GatewayPlugin,
    WriterNode: WriterPlugin,
    ProjectionNode: ProjectionPlugin,
}


def load_plugin_class(ref: PluginRef, node: Node, topology: Topology) -> type[Plugin]:
    """Import the plugin class `ref.use` names for `node`; PluginError says what went wrong."""
    for directory in reversed(topology.plugin_path):
        path = str(project_path(topology, directory))  # checked when the topology loaded
        if path not in sys.path:
            sys.path.insert(0, path)
    target = _import(ref.use)
    base = _BASES.get(type(node))
    if not isinstance(target, type) or not issubclass(target, Plugin):
        raise PluginError(
            f"plugin '{ref.use}' is not a cqrs_flow plugin class "
            "(subclass ReaderPlugin, GatewayPlugin, WriterPlugin or ProjectionPlugin)"
        )
    if base is None or not issubclass(target, base):
        wanted = base.__name__ if base else "no plugin"
        raise PluginError(
            f"plugin '{ref.use}' is a {target.kind or 'generic'} plugin; a {node.kind} "
            f"node takes {wanted}"
        )
    return target


def _import(use: str) -> Any:
    if "." not in use and ":" not in use:
        found = [
            e for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if e.name == use
        ]
        if not found:
            raise PluginError(
                f"plugin '{use}' is neither a dotted path nor an installed entry point "
                f"in the '{ENTRY_POINT_GROUP}' group"
            )
        try:
            return found[0].load()
        except Exception as exc:
            raise PluginError(
                f"plugin '{use}' ({found[0].value}) cannot be imported: {type(exc).__name__}: {exc}"
            ) from None
    module_name, _, attribute = use.partition(":") if ":" in use else use.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(
            f"plugin '{use}' cannot be imported: {type(exc).__name__}: {exc}"
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise PluginError(f"plugin '{use}': module {module_name} has no '{attribute}'") from None


async def start_plugins(node: Node, context: PluginContext) -> list[Plugin]:
    """Load, create and start the plugins of `node`, in the order the topology lists them; if
    one fails, those started before it are stopped."""
    plugins: list[Plugin] = []
    try:
        for ref in getattr(node, "plugins", ()):
            cls = load_plugin_class(ref, node, context.topology)
            try:
                plugin = cls(context, ref.config)
                await plugin.start()
            except Exception as exc:
                raise PluginError(
                    f"plugin '{ref.use}' failed to start: {type(exc).__name__}: {exc}"
                ) from exc
            plugins.append(plugin)
    except BaseException:
        await stop_plugins(plugins, context.log)  # those started already: none is left running
        raise
    return plugins


async def stop_plugins(plugins: list[Plugin], log: logging.Logger) -> None:
    for plugin in reversed(plugins):
        try:
            await plugin.stop()
        except Exception:
            log.exception("plugin '%s' failed to stop", plugin.name)
