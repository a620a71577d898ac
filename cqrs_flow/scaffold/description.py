"""What `cqrs-flow init` scaffolds from: the entity described on the command line, checked.

`parse_entities` turns `--entity Book title:String year:Int` into entities, `project_name` and
`make_project` name the project and pick its ports. Everything here is a pure function; wrong
input raises ScaffoldError with a message meant for the user.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cqrs_flow.topology.problems import suggest

__all__ = [
    "DEFAULT_PORT_BASE",
    "KEY",
    "PORT_OFFSETS",
    "TIMESTAMP",
    "TYPES",
    "WRITE_DELAY",
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

    @property
    def topic(self) -> str:  # BOOKSHOP/BOOK: its commands go on /ADD, /UPDATE and /DELETE under it
        return f"{self.name.upper()}/{self.entity.snake.upper()}"


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
            KEY: f"every entity has the key '{KEY}: String' already "
            "(the store fills it with a UUID)",
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
            f"init scaffolds one entity per project, not {len(entities)} ({names}): a gateway "
            "sends every query to one reader, a reader reads from one store, and a store holds one "
            f"document type, so {entities[1].name} would need a store, reader and gateway (a "
            "GraphQL endpoint) of its own. Scaffold each entity as a project of its own, with "
            "different --port-base values, or add such nodes to the topology by hand"
        )
    if not 1024 <= port_base <= MAX_PORT_BASE:
        raise ScaffoldError(
            f"port base {port_base} is out of range: it must be from 1024 to {MAX_PORT_BASE} "
            f"(the ports used are base + {', '.join(map(str, sorted(PORT_OFFSETS.values())))})"
        )
    return Project(name, entities[0], port_base)


# -- names ------------------------------------------------------------------------------------


def _words(pascal: str) -> list[str]:
    """The words of a PascalCase name: 'BookReview' -> ['Book', 'Review'],
    'ISBNRecord' -> ['ISBN', 'Record'], 'Book2' -> ['Book2']."""
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


def _type_list() -> str:
    return ", ".join(TYPES)
