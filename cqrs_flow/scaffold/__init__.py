"""`cqrs-flow init`: scaffold a new project (topology, protos, GraphQL schema, a gateway plugin
stub and a README) that `cqrs-flow up` runs as it is.

Everything here is a pure function of a parsed description, except `write_project`:

    entities = parse_entities(["--entity", "Book", "title:String", "year:Int"])
    project = make_project(project_name("bookshop"), entities, port_base=18000)
    write_project(Path("bookshop"), render(project))

Wrong input raises ScaffoldError with a message meant for the user (the CLI shows it as a bad
parameter). One project has exactly one entity: a gateway sends every query to one reader and
a reader reads from one store, which holds one document type (see `make_project`).
"""

from __future__ import annotations

import keyword
import re
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from cqrs_flow.topology.problems import suggest

__all__ = [
    "DEFAULT_PORT_BASE",
    "PORT_OFFSETS",
    "TYPES",
    "Entity",
    "Field",
    "Project",
    "ScaffoldError",
    "UnknownOption",
    "make_project",
    "parse_entities",
    "parse_entity",
    "parse_field",
    "project_name",
    "render",
    "write_project",
]

DEFAULT_PORT_BASE = 18000
# What listens where, as offsets from --port-base: 18883, 18051-18053 and 18080 by default,
# so a scaffolded project runs beside the shipped contacts system (1883, 50051-50053, 8080).
PORT_OFFSETS = {"broker": 883, "write": 51, "read": 52, "reader": 53, "gateway": 80}
MAX_PORT_BASE = 65535 - max(PORT_OFFSETS.values())

# GraphQL scalar -> proto3 type. GraphQL's Int is a signed 32-bit integer, hence int32.
TYPES = {"String": "string", "Int": "int32", "Float": "double", "Boolean": "bool", "ID": "string"}

KEY = "id"
TIMESTAMP = "updated_at"
WRITE_DELAY = "1s"

_ENTITY = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_FIELD_NAME = re.compile(r"^[a-z][A-Za-z0-9_]*$")
_PROJECT = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE = re.compile(r"^\s*(\[)?\s*([A-Za-z]+)\s*(!)?\s*(\])?\s*(!)?\s*$")
# Names the generated GraphQL schema or protos define themselves, or GraphQL reserves.
_RESERVED_ENTITIES = {
    *TYPES,
    "Query",
    "Mutation",
    "Subscription",
    "RequestResponse",
    "RequestStatus",
    "WriteResponse",
    "CommandStatus",
    "CommandState",
}


class ScaffoldError(ValueError):
    """Input `init` cannot scaffold from; the message says what to give instead."""


class UnknownOption(ScaffoldError):
    """An option among the entity descriptions that is not --entity (a typo, most likely)."""

    def __init__(self, option: str) -> None:
        super().__init__(f"no such option: {option}")
        self.option = option


# -- the description --------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a key of TYPES
    repeated: bool = False

    @property
    def proto(self) -> str:
        return ("repeated " if self.repeated else "") + TYPES[self.type]

    @property
    def graphql(self) -> str:
        """The non-null GraphQL type: every field of a proto3 message always has a value."""
        return f"[{self.type}!]!" if self.repeated else f"{self.type}!"


@dataclass(frozen=True)
class Entity:
    name: str  # PascalCase: BookReview
    fields: tuple[Field, ...]

    @property
    def camel(self) -> str:  # bookReview
        return _camel(self.name)

    @property
    def snake(self) -> str:  # book_review
        return _snake(self.name)

    @property
    def words(self) -> str:  # book review
        return self.snake.replace("_", " ")

    @property
    def plural(self) -> str:  # BookReviews
        return _plural(self.name)

    @property
    def plural_snake(self) -> str:  # book_reviews
        return _snake(self.plural)

    @property
    def plural_words(self) -> str:  # book reviews
        return self.plural_snake.replace("_", " ")

    @property
    def first_text(self) -> Field | None:
        """The first single String field: the one the plugin stub checks."""
        return next((f for f in self.fields if f.type == "String" and not f.repeated), None)


@dataclass(frozen=True)
class Project:
    name: str  # a lower-case identifier: proto package, plugin module, topology name
    entity: Entity
    port_base: int = DEFAULT_PORT_BASE

    def port(self, what: str) -> int:
        return self.port_base + PORT_OFFSETS[what]

    @property
    def rules(self) -> str:  # the gateway plugin class
        return f"{self.entity.name}Rules"

    def topic(self, action: str) -> str:
        return f"{self.name.upper()}/{self.entity.snake.upper()}/{action}"


# -- parsing ----------------------------------------------------------------------------------


def parse_field(text: str, entity: str = "") -> Field:
    """'title:String', 'year:Int', 'tags:[String]' -> Field; ScaffoldError says what is wrong."""
    where = f" of {entity}" if entity else ""
    name, colon, type_text = text.partition(":")
    name = name.strip()
    if not colon or not name or not type_text.strip():
        raise ScaffoldError(
            f"field {text!r}{where} is not NAME:TYPE, such as title:String or "
            f"'tags:[String]'; TYPE is one of {_type_list()}"
        )
    if not _FIELD_NAME.fullmatch(name):
        raise ScaffoldError(
            f"field name {name!r}{where} is not a snake_case or camelCase identifier: "
            "a lower-case letter, then letters, digits or '_'"
        )
    match = _TYPE.fullmatch(type_text)
    if (
        not match
        or bool(match.group(1)) != bool(match.group(4))
        or (match.group(5) and not match.group(1))
    ):
        raise ScaffoldError(
            f"type {type_text!r} of field {name!r}{where} is not a type or a list of "
            f"one, such as String or [String]; types: {_type_list()}"
        )
    by_lower = {t.lower(): t for t in TYPES}
    base = by_lower.get(match.group(2).lower())
    if base is None:
        close = suggest(match.group(2).lower(), by_lower, cutoff=0.5)
        hint = f"; did you mean {by_lower[close]}?" if close else ""
        raise ScaffoldError(
            f"unknown type {match.group(2)!r} of field {name!r}{where}{hint} "
            f"(types: {_type_list()}, or a list of one such as [String])"
        )
    return Field(name, base, repeated=bool(match.group(1)))


def parse_entity(name: str, field_texts: Sequence[str]) -> Entity:
    """An entity name and its NAME:TYPE fields -> Entity, after every check of names and types."""
    if not _ENTITY.fullmatch(name or ""):
        raise ScaffoldError(
            f"entity name {name!r} is not PascalCase: an upper-case letter, then "
            "letters or digits (Book, BookReview)"
        )
    if name in _RESERVED_ENTITIES:
        raise ScaffoldError(
            f"entity name {name!r} is taken by the generated schema or protos; choose another"
        )
    entity_snake = _snake(name)
    if not field_texts:
        raise ScaffoldError(
            f"entity {name} has no fields; give them after its name as NAME:TYPE, "
            f"such as: --entity {name} title:String year:Int"
        )
    fields: list[Field] = []
    for text in field_texts:
        found = parse_field(text, name)
        reserved = {
            KEY: f"every entity has the key '{KEY}: String' already (the store fills it with a UUID)",
            TIMESTAMP: f"the store sets '{TIMESTAMP}' to the RFC 3339 time of every write already",
            entity_snake: f"'{entity_snake}' names the request field that carries a {name}",
            "command_id": "'command_id' is the request field that carries each command's id",
        }
        if found.name in reserved:
            raise ScaffoldError(
                f"field name {found.name!r} of {name} is reserved: {reserved[found.name]}"
            )
        if any(f.name == found.name for f in fields):
            raise ScaffoldError(f"field {found.name!r} of {name} is given twice")
        fields.append(found)
    # protoc refuses two fields with one JSON name (foo_bar and fooBar); so do we, first.
    seen = {_json_name(KEY): KEY, _json_name(TIMESTAMP): TIMESTAMP}
    for f in fields:
        other = seen.setdefault(_json_name(f.name), f.name)
        if other != f.name:
            raise ScaffoldError(
                f"fields {other!r} and {f.name!r} of {name} differ only in '_' and case "
                f"(both are '{_json_name(f.name)}' in JSON); protobuf refuses that, rename one"
            )
    return Entity(name, tuple(fields))


def parse_entities(tokens: Sequence[str]) -> list[Entity]:
    """`--entity Book title:String year:Int [--entity Author name:String ...]` -> entities.

    `--entity=Book` works too. Each entity's fields follow its name up to the next --entity."""
    groups: list[tuple[str, list[str]]] = []
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--entity" or token.startswith("--entity="):
            if token == "--entity":
                if i + 1 >= len(tokens) or tokens[i + 1].startswith("-"):
                    raise ScaffoldError(
                        "--entity needs a name, then the fields: --entity Book title:String"
                    )
                i += 1
                name = tokens[i]
            else:
                name = token.partition("=")[2]
            groups.append((name, []))
        elif token.startswith("-"):
            raise UnknownOption(token.partition("=")[0])
        elif not groups:
            raise ScaffoldError(
                f"{token!r} comes before any --entity; write --entity NAME first, "
                f"then its fields: --entity Book {token}"
            )
        else:
            groups[-1][1].append(token)
        i += 1
    if not groups:
        raise ScaffoldError(
            "describe the entity: --entity NAME FIELD:TYPE..., such as "
            "--entity Book title:String year:Int"
        )
    return [parse_entity(name, fields) for name, fields in groups]


def project_name(directory: str | Path, explicit: str | None = None) -> str:
    """The project's name: `explicit`, or DIR's last part made a lower-case identifier
    ('My Shop-2' -> 'my_shop_2'). It names the proto package, the plugin module and the topics."""
    if explicit is not None:
        if not _PROJECT.fullmatch(explicit) or keyword.iskeyword(explicit):
            raise ScaffoldError(
                f"project name {explicit!r} is not a lower-case identifier (a letter, then "
                "lower-case letters, digits or '_'), or is a Python keyword"
            )
        return explicit
    base = Path(directory).expanduser().resolve().name
    ascii_text = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not name:
        raise ScaffoldError(
            f"cannot make a project name out of the directory name {base!r}; give one with --name"
        )
    if name[0].isdigit():
        name = "project_" + name
    if keyword.iskeyword(name):
        name += "_project"
    return name


def make_project(
    name: str, entities: Sequence[Entity], port_base: int = DEFAULT_PORT_BASE
) -> Project:
    """The project to render; exactly one entity (the topology model's limit, explained below)."""
    if not entities:
        raise ScaffoldError("describe the entity: --entity NAME FIELD:TYPE...")
    if len(entities) > 1:
        names = ", ".join(e.name for e in entities)
        raise ScaffoldError(
            f"init scaffolds one entity per project, not {len(entities)} ({names}): a gateway sends "
            "every query to one reader, a reader reads from one store, and a store holds one document "
            f"type, so {entities[1].name} would need a store, reader and gateway (a GraphQL endpoint) "
            "of its own. Scaffold each entity as a project of its own, with different --port-base "
            "values, or add such nodes to the topology by hand"
        )
    if not 1024 <= port_base <= MAX_PORT_BASE:
        raise ScaffoldError(
            f"port base {port_base} is out of range: it must be from 1024 to {MAX_PORT_BASE} "
            f"(the ports used are base + {', '.join(map(str, sorted(PORT_OFFSETS.values())))})"
        )
    return Project(name, entities[0], port_base)


# -- rendering --------------------------------------------------------------------------------


def render(project: Project) -> dict[str, str]:
    """Relative path -> text of every file of the project."""
    name = project.name
    return {
        "topology.yaml": render_topology(project),
        f"proto/{name}.proto": render_proto(project),
        f"schema/{name}.graphql": render_schema(project),
        "plugins/__init__.py": f'"""Plugins of the {name} system (see {name}.py)."""\n',
        f"plugins/{name}.py": render_plugin(project),
        "README.md": render_readme(project),
    }


def render_topology(p: Project) -> str:
    e = p.entity
    commands = [
        (f"{action.lower()}_{e.snake}", p.topic(action), f"{action.title()}{e.name}")
        for action in ("ADD", "UPDATE", "DELETE")
    ]
    width_name = max(len(c[0]) for c in commands) + 1
    width_topic = max(len(c[1]) for c in commands) + 1
    command_lines = "\n".join(
        f"  {(command + ':').ljust(width_name)} {{topic: {(topic + ',').ljust(width_topic)} rpc: {rpc}}}"
        for command, topic, rpc in commands
    )
    required = _yaml([e.first_text.name] if e.first_text else [])
    return f"""\
# The {p.name} system, scaffolded by `cqrs-flow init`. Run it from this directory with:
#   cqrs-flow up topology.yaml
# (`cqrs-flow validate topology.yaml` checks it without starting anything).
#
# Mutations publish commands on MQTT topics; the writer applies them to the store's write
# service after the delay. Queries go gateway -> reader -> the store's read service over gRPC.
name: {_yaml(p.name)}
proto: proto/{p.name}.proto

# Each command: the topic it travels on and the store write RPC that applies it.
# The message on the topic is that RPC's request, protobuf-encoded.
commands:
{command_lines}

nodes:
  broker:
    kind: broker
    listen: 127.0.0.1:{p.port("broker")}

  store:
    kind: store
    document: {p.name}.{e.name}
    collection: {_yaml(e.plural_snake)}
    key: {KEY}
    timestamp: {TIMESTAMP}
    write:
      service: {p.name}.{e.name}WriteService
      listen: 127.0.0.1:{p.port("write")}
      rpcs:
        Add{e.name}: insert
        Update{e.name}: update
        Delete{e.name}: delete
        Add{e.plural}: insert_many
        Delete{e.plural}: delete_many
    read:
      service: {p.name}.{e.name}ReadService
      listen: 127.0.0.1:{p.port("read")}
      rpcs:
        Get{e.name}: get
        List{e.plural}: list

  reader:
    kind: reader
    service: {p.name}.{e.name}Reader
    listen: 127.0.0.1:{p.port("reader")}
    store: store.read

  writer:
    kind: writer
    broker: broker
    store: store.write
    commands: [{", ".join(c[0] for c in commands)}]
    delay: {WRITE_DELAY}

  gateway:
    kind: gateway
    listen: 127.0.0.1:{p.port("gateway")}
    schema: schema/{p.name}.graphql
    broker: broker
    reader: reader
    queries:
      {_yaml(e.camel)}: Get{e.name}
      list{e.plural}: List{e.plural}
    mutations:
      add{e.name}:
        command: {commands[0][0]}
        generate: {{{e.snake}.{KEY}: uuid}}
        message: Queued to add
      update{e.name}:
        command: {commands[1][0]}
        exists: Get{e.name}
        message: Queued to update
        not_found: "{e.words} {{id}} not found"
      delete{e.name}:
        command: {commands[2][0]}
        exists: Get{e.name}
        message: Queued to delete
        not_found: "{e.words} {{id}} not found"
    plugins:   # plugins/{p.name}.py; `required` lists text fields that must not be blank
      - {{use: plugins.{p.name}.{p.rules}, config: {{required: {required}}}}}
"""


def render_proto(p: Project) -> str:
    e = p.entity
    fields = (
        [(f"string {KEY}", "")]
        + [(f.proto + " " + f.name, "") for f in e.fields]
        + [(f"string {TIMESTAMP}", "  // RFC 3339, set by the store on every write")]
    )
    field_lines = "\n".join(
        f"  {decl} = {number};{comment}" for number, (decl, comment) in enumerate(fields, 1)
    )
    n, pl, s, ps = e.name, e.plural, e.snake, e.plural_snake
    return f"""\
// The {p.name} system's gRPC contracts, scaffolded by `cqrs-flow init`: the document type, the
// store's write and read services, and the reader the gateway calls.
syntax = "proto3";

package {p.name};

message {n} {{
{field_lines}
}}

// Commands; the gateway sets command_id, and the store applies each command id once.
message Add{n}Request {{ {n} {s} = 1; string command_id = 15; }}
message Update{n}Request {{ {n} {s} = 1; string command_id = 15; }}
message Delete{n}Request {{ string {KEY} = 1; string command_id = 15; }}
message Add{pl}Request {{ repeated {n} {ps} = 1; }}
message Delete{pl}Request {{ repeated string ids = 1; }}

// What a write did: the key of the {e.words} it touched and how many {e.plural_words} it changed.
message WriteResponse {{
  string {KEY} = 1;
  int32 count = 2;
}}

message Get{n}Request {{ string {KEY} = 1; }}
message Get{n}Response {{ {n} {s} = 1; }}
message List{pl}Request {{ int32 count = 1; }}
message List{pl}Response {{ repeated {n} {ps} = 1; }}

// The store's write side: only writers may call it.
service {n}WriteService {{
  rpc Add{n}(Add{n}Request) returns (WriteResponse);
  rpc Update{n}(Update{n}Request) returns (WriteResponse);
  rpc Delete{n}(Delete{n}Request) returns (WriteResponse);
  rpc Add{pl}(Add{pl}Request) returns (WriteResponse);
  rpc Delete{pl}(Delete{pl}Request) returns (WriteResponse);
}}

// The store's read side: only readers may call it.
service {n}ReadService {{
  rpc Get{n}(Get{n}Request) returns (Get{n}Response);
  rpc List{pl}(List{pl}Request) returns (List{pl}Response);
}}

// The reader: the read API the gateway calls, where reader plugins add RPCs of their own.
service {n}Reader {{
  rpc Get{n}(Get{n}Request) returns (Get{n}Response);
  rpc List{pl}(List{pl}Request) returns (List{pl}Response);
}}
"""


def render_schema(p: Project) -> str:
    e = p.entity
    type_lines = "\n".join(
        [f"  {KEY}: String!"]
        + [f"  {f.name}: {f.graphql}" for f in e.fields]
        + ['  "RFC 3339 time of the last write."', f"  {TIMESTAMP}: String!"]
    )
    arguments = [f"{f.name}: {f.graphql}" for f in e.fields]
    return f"""\
# The {p.name} system's GraphQL API, scaffolded by `cqrs-flow init`. Mutations queue commands,
# applied after the writer's delay; queries read synchronously. Field names are those of the
# proto message {p.name}.{e.name}: the gateway answers with them.

enum RequestStatus {{
  OK
  ERROR
}}

"What a mutation did: OK when the command was queued, ERROR with the reason otherwise."
type RequestResponse {{
  status: RequestStatus!
  message: String!
  "The id of the {e.words} the command is about (for add{e.name}: the new {e.words}'s id)."
  id: String
  "The id of the queued command: ask commandStatus(id) what became of it."
  command_id: String
}}

type {e.name} {{
{type_lines}
}}

type Query {{
  "The {e.words} with this id; null when there is none."
  {e.camel}(id: String!): {e.name}
  "Up to count {e.plural_words}."
  list{e.plural}(count: Int!): [{e.name}!]!
}}

type Mutation {{
  "Queues a new {e.words}; answers with the id it will have."
  {_signature(f"add{e.name}", arguments)}
  "Replaces every field of the {e.words} with this id."
  {_signature(f"update{e.name}", ["id: String!", *arguments])}
  {_signature(f"delete{e.name}", ["id: String!"])}
}}
"""


def _signature(name: str, arguments: list[str], width: int = 100) -> str:
    """A mutation field on one line, or with one argument a line when that is too long."""
    line = f"{name}({', '.join(arguments)}): RequestResponse!"
    if len(line) + 2 <= width:
        return line
    inner = "".join(f"\n    {a}" for a in arguments)
    return f"{name}({inner}\n  ): RequestResponse!"


def render_plugin(p: Project) -> str:
    e = p.entity
    example = textwrap.indent(
        textwrap.dedent(f"""\
        if mutation == "delete{e.name}":
            raise Rejected("{e.plural_words} are kept forever here")"""),
        "        # ",
    )
    numeric = next((f for f in e.fields if f.type in ("Int", "Float") and not f.repeated), None)
    if numeric is not None:
        example = (
            textwrap.indent(
                textwrap.dedent(f"""\
            if mutation in ("add{e.name}", "update{e.name}") and command.{e.snake}.{numeric.name} < 0:
                raise Rejected("{numeric.name} must not be negative")"""),
                "        # ",
            )
            + "\n        #\n"
            + example
        )
    return f'''\
"""Business logic of the {p.name} system, scaffolded by `cqrs-flow init`: rules the gateway checks
before it publishes a command. topology.yaml hooks them in (nodes.gateway.plugins).

A plugin can also answer reader RPCs (ReaderPlugin) or see each command before the writer applies
it (WriterPlugin); see plugins/README.md in cqrs-flow for the whole API.
"""

from __future__ import annotations

from typing import Any, Mapping

from google.protobuf.message import Message

from cqrs_flow.protobuf.messages import find_field, get_path, set_path
from cqrs_flow.plugins import GatewayPlugin, Rejected


class {p.rules}(GatewayPlugin):
    """Checks the commands of add{e.name}, update{e.name} and delete{e.name} before they are published.

    config: required, the text fields that must not be blank (they are trimmed, too).
    """

    async def start(self) -> None:
        self.required = list(self.config.get("required", []))
        self.context.log.info("{p.rules} loaded; required fields: %s", ", ".join(self.required) or "none")

    async def before_publish(self, mutation: str, command: Message, arguments: Mapping[str, Any]) -> None:
        # `command` is the request the writer will apply: Add{e.name}Request, Update{e.name}Request or
        # Delete{e.name}Request. Raise Rejected("why") to answer ERROR with that message and publish
        # nothing, or change `command` in place.
        for name in self.required:
            path = find_field(command.DESCRIPTOR, name)  # "{e.snake}.<name>"; None in a delete
            if path is None:
                continue
            value = get_path(command, path).strip()
            if not value:
                raise Rejected(f"{{name}} must not be empty")
            set_path(command, path, value)

        # Your own rules go here, for example:
        #
{example}
'''


def _example_value(f: Field, variant: int) -> str:
    """A GraphQL literal for field `f` (variant 1 for an add, 2 for an update)."""
    one = {
        "String": f'"{f.name} {variant}"',
        "ID": f'"{f.name}-{variant}"',
        "Int": str(40 + variant),
        "Float": f"{variant + 2}.5",
        "Boolean": "true" if variant == 1 else "false",
    }[f.type]
    if not f.repeated:
        return one
    two = {
        "String": f'"{f.name} {variant}b"',
        "ID": f'"{f.name}-{variant}b"',
        "Int": str(variant),
        "Float": "0.5",
        "Boolean": "true",
    }[f.type]
    return f"[{one}, {two}]"


def render_readme(p: Project) -> str:
    e = p.entity
    selection = " ".join([KEY, *(f.name for f in e.fields), TIMESTAMP])
    add_args = ", ".join(f"{f.name}: {_example_value(f, 1)}" for f in e.fields)
    update_args = ", ".join(f"{f.name}: {_example_value(f, 2)}" for f in e.fields)
    gateway = f"127.0.0.1:{p.port('gateway')}"
    curl_add = f"mutation {{ add{e.name}({add_args}) {{ status message id }} }}".replace('"', '\\"')
    first = e.first_text
    rule = (
        f"It refuses a blank `{first.name}` (and trims it), as `required: [{first.name}]` in "
        "topology.yaml asks"
        if first
        else "It checks that the text fields listed under `required` in "
        "topology.yaml are not blank (none yet: the entity has no String field)"
    )
    intro = _para(
        f"A CQRS system scaffolded by `cqrs-flow init`: {e.plural_words} kept by a store, changed "
        "by commands that a writer takes from an MQTT broker and applies after a "
        f"{WRITE_DELAY} delay, read through a reader, and served over GraphQL by a gateway."
    )
    try_it = _para(
        f"`add{e.name}` answers at once with the id the new {e.words} will have; the "
        f"{e.words} is readable once the writer's {WRITE_DELAY} delay has passed. Replace "
        "`<id>` with that id."
    )
    files = "\n".join(
        _para(item, indent="  ").replace("  - ", "- ", 1)
        for item in [
            "- `topology.yaml`: the nodes (broker, store, reader, writer, gateway), the commands "
            f"({', '.join(f'`{p.topic(a)}`' for a in ('ADD', 'UPDATE', 'DELETE'))}) and the write delay.",
            f"- `proto/{p.name}.proto`: the document type `{e.name}` and the gRPC services of the store "
            "and the reader.",
            f"- `schema/{p.name}.graphql`: the GraphQL API; its field names are the proto's.",
            f"- `plugins/{p.name}.py`: `{p.rules}`, a gateway plugin that runs before each command is "
            f"published. {rule}; add your own rules there.",
        ]
    )
    return f"""\
# {p.name}

{intro}

## Run it

From this directory:

    cqrs-flow validate topology.yaml   # checks the topology against the proto and the schema
    cqrs-flow up topology.yaml         # starts every node; Ctrl-C stops them

GraphQL endpoint: http://{gateway}/graphql, with a playground at http://{gateway}/.
The ports come from `cqrs-flow init --port-base {p.port_base}`:

| node | listens on |
|---|---|
| broker (MQTT) | 127.0.0.1:{p.port("broker")} |
| store write service (gRPC) | 127.0.0.1:{p.port("write")} |
| store read service (gRPC) | 127.0.0.1:{p.port("read")} |
| reader (gRPC) | 127.0.0.1:{p.port("reader")} |
| gateway (HTTP) | {gateway} |

## Try it

{try_it}

```graphql
mutation Add{e.name} {{ add{e.name}({add_args}) {{ status message id }} }}
query List{e.plural} {{ list{e.plural}(count: 10) {{ {selection} }} }}
query {e.name} {{ {e.camel}(id: "<id>") {{ {selection} }} }}
mutation Update{e.name} {{ update{e.name}(id: "<id>", {update_args}) {{ status message }} }}
mutation Delete{e.name} {{ delete{e.name}(id: "<id>") {{ status message }} }}
```

`update{e.name}` replaces every field. Updating or deleting an id that does not exist answers
`ERROR` with `{e.words} <id> not found`; `{e.camel}(id:)` answers `null` for it. From a shell:

    curl -s {gateway}/graphql -H 'content-type: application/json' \\
         -d '{{"query": "{curl_add}"}}'

## The files

{files}

{
        _para(
            f"To add a field to `{e.name}`, add it to the message in the proto, to the type `{e.name}` and "
            f"to the arguments of `add{e.name}` and `update{e.name}` in the schema; `cqrs-flow validate "
            "topology.yaml` says what does not fit."
        )
    }
"""


# -- writing ----------------------------------------------------------------------------------


def write_project(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write `files` under `directory`, which must not exist or be empty; the paths written."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise ScaffoldError(f"{directory} exists and is not a directory; nothing was written")
        if any(directory.iterdir()):
            raise ScaffoldError(
                f"{directory} is not empty; init writes only into a new or empty "
                "directory, to overwrite nothing (nothing was written)"
            )
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# -- names ------------------------------------------------------------------------------------


def _words(pascal: str) -> list[str]:
    """'BookReview' -> ['Book', 'Review']; 'ISBNRecord' -> ['ISBN', 'Record']; 'Book2' -> ['Book2']."""
    return re.findall(r"[A-Z]+(?![a-z])[0-9]*|[A-Z][a-z0-9]*|[a-z0-9]+", pascal)


def _snake(pascal: str) -> str:
    return "_".join(w.lower() for w in _words(pascal))


def _camel(pascal: str) -> str:
    words = _words(pascal)
    return words[0].lower() + "".join(words[1:])


def _plural(pascal: str) -> str:
    if re.search(r"[^aeiouAEIOU]y$", pascal):
        return pascal[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", pascal):
        return pascal + "es"
    return pascal + ("S" if pascal[-1].isupper() else "s")


def _json_name(name: str) -> str:
    """protoc's default JSON name of a field: 'foo_bar' -> 'fooBar'."""
    return re.sub(r"_+([a-zA-Z0-9]?)", lambda m: m.group(1).upper(), name)


def _yaml(value: str | list[str]) -> str:
    """A YAML flow scalar or list that reads back as these strings: 'title', but 'null' quoted."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")


def _para(text: str, width: int = 100, indent: str = "") -> str:
    return textwrap.fill(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _type_list() -> str:
    return ", ".join(TYPES)
