"""The files of a scaffolded project, rendered from its description, and writing them.

`render` is a pure function of a Project (relative path -> text); `write_project` writes into a
new or empty directory only, so init never overwrites anything.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from cqrs_flow.scaffold.description import (
    KEY,
    TIMESTAMP,
    WRITE_DELAY,
    Field,
    Project,
    ScaffoldError,
)

__all__ = ["render", "write_project"]

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
