"""What `cqrs-flow init` scaffolds from: the entities described on the command line, checked.

`parse_entities` turns `--entity Book title:String author:Author` into entities (a field typed by
another entity refers to it), `project_name` and `make_project` name the project, work out the
relations between its entities and pick its ports. Everything here is a pure function; wrong
input raises ScaffoldError with a message meant for the user.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cqrs_flow.topology.model import Relation
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
    "Relation",
    "ScaffoldError",
    "UnknownOption",
    "make_optional",
    "make_project",
    "parse_entities",
    "parse_entity",
    "parse_field",
    "parse_required",
    "project_name",
]

DEFAULT_PORT_BASE = 18000
# What listens where, as offsets from --port-base: 18883, 18051-18053 and 18080 by default,
# so a scaffolded project runs beside the shipped contacts system (1883, 50051-50053, 8080).
# Where each listener is, from the port base (--port-base); metrics: the first of five ports,
# one per node process (the topology's `metrics`).
PORT_OFFSETS = {
    "broker": 883,
    "write": 51,
    "read": 52,
    "reader": 53,
    "gateway": 80,
    "metrics": 90,
}
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
# Names a project of several entities defines besides those above: its services and the types
# of its lists. Each entity's own (BookEdge, AddBookRequest, ...) are checked in make_project.
_SHARED_NAMES = {
    "WriteService",
    "ReadService",
    "Reader",
    "PageInfo",
    "OrderDirection",
    "StringFilter",
    "IntFilter",
    "FloatFilter",
    "BooleanFilter",
}
# The GraphQL filter of each field type an index may have (the conventions of the gateway).
FILTERS = {
    "String": "StringFilter",
    "ID": "StringFilter",
    "Int": "IntFilter",
    "Float": "FloatFilter",
    "Boolean": "BooleanFilter",
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
    type: str  # a key of TYPES ("String" for a reference: it holds the other entity's key)
    repeated: bool = False
    refers: str | None = None  # author:Author refers to the entity Author
    required: bool = True  # init asks (or --optional says) which fields may be left out

    @property
    def stored(self) -> str:
        """The document field: the name itself, or for a reference the field holding the other
        entity's key: author -> author_id, mainAuthor -> mainAuthorId."""
        if self.refers is None:
            return self.name
        return f"{self.name}Id" if _has_upper(self.name) else f"{self.name}_{KEY}"

    @property
    def proto(self) -> str:
        """A required field is a plain proto3 field (it always has a value); an optional one is
        `optional`, so that a document without it is told from one with the type's default."""
        if self.repeated:
            return f"repeated {TYPES[self.type]}"
        return ("" if self.required else "optional ") + TYPES[self.type]

    @property
    def graphql(self) -> str:
        """The field's GraphQL type in its entity's type: non-null when required; an optional
        field is null when it was not given. A list is never null (empty when none was given)."""
        if self.repeated:
            return f"[{self.type}!]!"
        return f"{self.type}!" if self.required else self.type

    @property
    def argument(self) -> str:
        """The type of its argument in the add and update mutations: an optional field's may be
        left out."""
        if self.required:
            return self.graphql
        return f"[{self.type}!]" if self.repeated else self.type

    @property
    def indexed(self) -> bool:
        """Lists filter and order on it: one value per document (a reference's key too)."""
        return not self.repeated


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
    def plural_camel(self) -> str:  # bookReviews
        return _camel(self.plural)

    @property
    def first_text(self) -> Field | None:
        """The first required single String field (no reference): the one the plugin stub
        checks is not blank (an optional one may be left out, so may be empty)."""
        return next(
            (
                f
                for f in self.fields
                if f.type == "String" and not f.repeated and not f.refers and f.required
            ),
            None,
        )

    @property
    def optional(self) -> tuple[str, ...]:
        """The names of the fields that may be left out."""
        return tuple(f.name for f in self.fields if not f.required)

    @property
    def indexes(self) -> tuple[str, ...]:
        """The document fields lists filter and order on: every single-valued one."""
        return tuple(f.stored for f in self.fields if f.indexed)


@dataclass(frozen=True)
class Project:
    name: str  # a lower-case identifier: proto package, plugin module, topology name
    entities: tuple[Entity, ...]
    port_base: int = DEFAULT_PORT_BASE
    # entity name -> its relations, to one then to many (see `make_project`)
    relations: dict[str, tuple[Relation, ...]] = field(default_factory=dict, compare=False)

    def port(self, what: str) -> int:
        return self.port_base + PORT_OFFSETS[what]

    @property
    def entity(self) -> Entity:
        """The first entity: a project of one entity is written about it."""
        return self.entities[0]

    @property
    def several(self) -> bool:
        """Whether the project is written in the form of several entities (a store holding
        `entities:`, lists as connections), which any reference between entities needs too.
        A project of one entity without one keeps the form of one entity."""
        return len(self.entities) > 1 or any(f.refers for f in self.entity.fields)

    @property
    def rules(self) -> str:  # the gateway plugin class
        if self.several:
            return "".join(w.capitalize() for w in self.name.split("_")) + "Rules"
        return f"{self.entity.name}Rules"

    @property
    def topic(self) -> str:  # BOOKSHOP/BOOK: its commands go on /ADD, /UPDATE and /DELETE under it
        return self.topic_of(self.entity)

    def topic_of(self, entity: Entity) -> str:
        return f"{self.name.upper()}/{entity.snake.upper()}"

    def relations_of(self, entity: Entity) -> tuple[Relation, ...]:
        return self.relations.get(entity.name, ())


# -- parsing ----------------------------------------------------------------------------------


def parse_field(text: str, entity: str = "", entities: Sequence[str] = ()) -> Field:
    """'title:String', 'year:Int', 'tags:[String]' -> Field; with `entities` (the names of the
    project's entities), 'author:Author' is a reference to one. ScaffoldError says what is
    wrong."""
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
    repeated = bool(match.group(1))
    if match.group(2) in entities:
        return _reference(name, match.group(2), repeated, entity)
    by_lower = {t.lower(): t for t in TYPES}
    base = by_lower.get(match.group(2).lower())
    if base is None:
        known = {**by_lower, **{e.lower(): e for e in entities}}
        close = suggest(match.group(2).lower(), known, cutoff=0.5)
        hint = f"; did you mean {known[close]}?" if close else ""
        others = f", or an entity: {', '.join(entities)}" if entities else ""
        raise ScaffoldError(
            f"unknown type {match.group(2)!r} of field {name!r}{where}{hint} "
            f"(types: {_type_list()}, or a list of one such as [String]{others})"
        )
    return Field(name, base, repeated=repeated)


def _reference(name: str, target: str, repeated: bool, entity: str) -> Field:
    """author:Author: the document holds the key of one Author (author_id)."""
    if repeated:
        raise ScaffoldError(
            f"field {name!r} of {entity} is a list of {target}: a reference leads to one. To "
            f"relate a {entity} to many {_plural(target)}, give {target} the reference "
            f"instead ({_camel(entity)}:{entity}): {entity} then gets the list "
            f"({entity}.{_camel(_plural(target))})"
        )
    if re.search(r"(_id|Id)$", name):
        bare = re.sub(r"(_id|Id)$", "", name) or _camel(target)
        raise ScaffoldError(
            f"field {name!r} of {entity} refers to {target}: name it after what it leads to, "
            f"{bare}:{target}; init adds the field holding the key "
            f"({Field(bare, 'String', refers=target).stored})"
        )
    return Field(name, "String", refers=target)


def parse_entity(name: str, field_texts: Sequence[str], entities: Sequence[str] = ()) -> Entity:
    """An entity name and its NAME:TYPE fields -> Entity, after every check of names and types.
    `entities` are the names a field's type may refer to (the project's entities)."""
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
        found = parse_field(text, name, entities)
        reserved = {
            KEY: f"every entity has the key '{KEY}: String' already "
            "(the store fills it with a UUID)",
            TIMESTAMP: f"the store sets '{TIMESTAMP}' to the RFC 3339 time of every write already",
            entity_snake: f"'{entity_snake}' names the request field that carries a {name}",
            "command_id": "'command_id' is the request field that carries each command's id",
        }
        for given in dict.fromkeys((found.name, found.stored)):
            if given in reserved:
                raise ScaffoldError(
                    f"field name {given!r} of {name} is reserved: {reserved[given]}"
                )
        if any(f.name == found.name for f in fields):
            raise ScaffoldError(f"field {found.name!r} of {name} is given twice")
        for earlier in fields:
            if {earlier.name, earlier.stored} & {found.name, found.stored}:
                ref, plain = (earlier, found) if earlier.refers else (found, earlier)
                raise ScaffoldError(
                    f"field {plain.name!r} of {name} has the name of the field holding the "
                    f"key of {ref.name}:{ref.refers} ({ref.stored}); rename one"
                )
        fields.append(found)
    # protoc refuses two fields with one JSON name (foo_bar and fooBar); so do we, first.
    seen = {_json_name(KEY): KEY, _json_name(TIMESTAMP): TIMESTAMP}
    for f in fields:
        other = seen.setdefault(_json_name(f.stored), f.stored)
        if other != f.stored:
            raise ScaffoldError(
                f"fields {other!r} and {f.stored!r} of {name} differ only in '_' and case "
                f"(both are '{_json_name(f.stored)}' in JSON); protobuf refuses that, rename one"
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
    names = [name for name, _ in groups]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ScaffoldError(f"entity {name} is given twice; give each entity once")
    entities = [parse_entity(name, fields, names) for name, fields in groups]
    _refuse_cycles(entities)
    return entities


def _refuse_cycles(entities: Sequence[Entity]) -> None:
    """References between two or more entities that come round in a circle have no order to add
    their entities in, each with its reference set. One entity referring to itself does (the
    first has none: an employee without a manager)."""
    refers = {e.name: [f for f in e.fields if f.refers and f.refers != e.name] for e in entities}
    done: set[str] = set()

    def visit(name: str, path: list[Field], on_path: list[str]) -> None:
        if name in on_path:
            start = on_path.index(name)
            circle, fields = on_path[start:], path[start:]
            who = (
                f"{circle[0]} and {circle[1]} refer to each other"
                if len(circle) == 2
                else f"{', '.join(circle[:-1])} and {circle[-1]} refer to one another in a circle"
            )
            given = ", ".join(
                f"{owner}.{f.name}:{f.refers}" for owner, f in zip(circle, fields, strict=True)
            )
            first = fields[0]
            raise ScaffoldError(
                f"{who} ({given}): none of them could be added with its reference set before "
                f"the other{'s' if len(circle) > 2 else ''} exist{'' if len(circle) > 2 else 's'}. "
                f"Drop one of these fields: its relation comes the other way anyway, as a list "
                f"({first.name}:{first.refers} in {circle[0]} gives "
                f"{first.refers}.{_camel(_plural(circle[0]))}). An entity may refer to itself "
                "(Employee manager:Employee)"
            )
        if name in done:
            return
        for f in refers.get(name, []):
            visit(f.refers or "", [*path, f], [*on_path, name])
        done.add(name)

    for entity in entities:
        visit(entity.name, [], [])


def make_optional(entities: Sequence[Entity], names: Iterable[str]) -> list[Entity]:
    """The entities with the fields `names` optional (`--optional`): each name is FIELD, the
    field of that name in every entity that has one, or ENTITY.FIELD; names may also come
    comma-separated ('nickname,email'). Every other field stays required."""
    wanted = [n.strip() for text in names for n in text.split(",") if n.strip()]
    by_name = {e.name: e for e in entities}
    optional: dict[str, set[str]] = {e.name: set() for e in entities}
    for name in wanted:
        entity_name, dot, field_name = name.rpartition(".")
        if dot:
            if entity_name not in by_name:
                close = suggest(entity_name, by_name, cutoff=0.5)
                hint = f"; did you mean {close}.{field_name}?" if close else ""
                raise ScaffoldError(
                    f"--optional {name}: there is no entity {entity_name!r}{hint} "
                    f"(entities: {', '.join(by_name)})"
                )
            owners = [by_name[entity_name]]
        else:
            owners = [e for e in entities if any(f.name == field_name for f in e.fields)]
            if not owners:
                known = sorted({f.name for e in entities for f in e.fields})
                close = suggest(field_name, known, cutoff=0.5)
                hint = f"; did you mean {close}?" if close else ""
                raise ScaffoldError(
                    f"--optional {name}: no entity has a field {field_name!r}{hint} "
                    f"(fields: {', '.join(known)})"
                )
        for owner in owners:
            _field_of(owner, field_name, f"--optional {name}")
            optional[owner.name].add(field_name)
    return [_with_optional(e, optional[e.name]) for e in entities]


def parse_required(entity: Entity, answer: str) -> Entity:
    """The entity with only the fields `answer` names required, the answer to init's question
    "which fields are required": 'all' (or nothing), 'none', or names separated by commas or
    spaces."""
    text = answer.strip()
    if text.lower() in ("", "all"):
        return _with_optional(entity, set())
    names = {f.name for f in entity.fields}
    if text.lower() == "none":
        return _with_optional(entity, names)
    required = {n for n in re.split(r"[\s,]+", text) if n}
    for name in required:
        _field_of(entity, name)
    return _with_optional(entity, names - required)


def _field_of(entity: Entity, name: str, given: str = "") -> Field:
    """The field `name` of `entity`; ScaffoldError with a did-you-mean otherwise (after
    `given`, what the user wrote, when that is not the name alone)."""
    found = next((f for f in entity.fields if f.name == name), None)
    if found is None:
        fields = [f.name for f in entity.fields]
        close = suggest(name, fields, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        where = f"{given}: " if given else ""
        raise ScaffoldError(
            f"{where}{entity.name} has no field {name!r}{hint} (its fields: {', '.join(fields)})"
        )
    return found


def _with_optional(entity: Entity, optional: set[str]) -> Entity:
    return Entity(
        entity.name,
        tuple(replace(f, required=f.name not in optional) for f in entity.fields),
    )


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
    """The project to render: its entities, the relations between them (see `_relations`) and
    its ports. Names the entities' files would share are refused here."""
    if not entities:
        raise ScaffoldError("describe the entity: --entity NAME FIELD:TYPE...")
    if not 1024 <= port_base <= MAX_PORT_BASE:
        raise ScaffoldError(
            f"port base {port_base} is out of range: it must be from 1024 to {MAX_PORT_BASE} "
            f"(the ports used are base + {', '.join(map(str, sorted(PORT_OFFSETS.values())))})"
        )
    project = Project(name, tuple(entities), port_base)
    if not project.several:
        return project
    _refuse_shared_names(project.entities)
    return Project(name, project.entities, port_base, _relations(project.entities))


def _refuse_shared_names(entities: Sequence[Entity]) -> None:
    """Two entities must not make the same name anywhere: a type, a message, a query, a
    command or a collection."""
    made: dict[str, str] = dict.fromkeys(_SHARED_NAMES, "")
    for e in entities:
        names = [
            e.name,
            *(f"{e.name}{suffix}" for suffix in ("Edge", "Connection", "OrderField", "Order")),
            f"{e.name}Where",
            *(f"{verb}{e.name}Request" for verb in ("Add", "Update", "Remove", "Get")),
            f"Get{e.name}Response",
            e.camel,  # a query, and with add_/update_/remove_ the commands
            e.plural_camel,  # a query
            e.snake,
            e.plural_snake,  # a collection
        ]
        for made_name in dict.fromkeys(names):
            other = made.setdefault(made_name, e.name)
            if other != e.name:
                raise ScaffoldError(
                    f"entity {e.name} would make the name {made_name!r}, which "
                    + (
                        f"entity {other} makes too; rename one of them"
                        if other
                        else "the generated schema or protos have already; choose another name"
                    )
                )


def _relations(entities: Sequence[Entity]) -> dict[str, tuple[Relation, ...]]:
    """Each reference author:Author of Book is a relation to one (Book.author, by its key
    author_id) and, on Author, one to many (Author.books, by author_id). The one to many is
    named after the plural of the referring entity (books), or after the field too (authorBooks)
    where that would take a name the entity has, or Book refers to Author more than once."""
    to_one = {
        e.name: [Relation(f.name, f.refers, key=f.stored) for f in e.fields if f.refers]
        for e in entities
    }
    taken = {
        e.name: {KEY, TIMESTAMP, *(n for f in e.fields for n in (f.name, f.stored))}
        | {r.name for r in to_one[e.name]}
        for e in entities
    }
    to_many: dict[str, list[Relation]] = {e.name: [] for e in entities}
    for e in entities:
        references = [f for f in e.fields if f.refers]
        for f in references:
            target = f.refers or ""
            twice = sum(other.refers == target for other in references) > 1
            name = e.plural_camel
            if twice or name in taken[target]:
                name = _camel_field(f.name) + e.plural
            if name in taken[target]:
                raise ScaffoldError(
                    f"{target} would get the list of {e.plural} by {f.stored} as its field "
                    f"{name!r}, a name it has already; rename field {f.name!r} of {e.name}"
                )
            taken[target].add(name)
            to_many[target].append(Relation(name, e.name, by=f.stored))
    return {e.name: (*to_one[e.name], *to_many[e.name]) for e in entities}


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


def _camel_field(name: str) -> str:
    """A field name in camelCase: 'main_author' -> 'mainAuthor', 'mainAuthor' stays."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _has_upper(name: str) -> bool:
    return name != name.lower()


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
