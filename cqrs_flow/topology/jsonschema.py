"""The JSON Schema (draft 2020-12) of topology files, generated from the table in spec.py.

Editors use it to complete and check topology files as they are typed. It is derived, never
written by hand: each container of the table (Section, MapOf, ListOf, ByKind) and each scalar
type callable maps to a schema fragment here, so a key added to spec.py appears in the schema
when it is regenerated (`cqrs-flow schema > topology.schema.json`). A scalar type with no
mapping raises UnmappedType instead of being silently let through.

The schema checks what spec.py checks (keys, types, forms); the wiring between nodes is left to
`cqrs-flow validate`. It declares draft 2020-12 but uses only keywords draft-07 has too (no
$defs, no unevaluatedProperties): the YAML language server behind most editors validates with
draft-07 rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cqrs_flow.topology import spec
from cqrs_flow.topology.problems import KeyPath, format_path

__all__ = ["DRAFT", "UnmappedType", "schema_text", "topology_schema"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]


class UnmappedType(Exception):
    """A type in spec.py that this module cannot express as JSON Schema (yet)."""


def topology_schema() -> Schema:
    """The JSON Schema of a whole topology file."""
    return {
        "$schema": DRAFT,
        "title": "cqrs-flow topology",
        "description": "A CQRS system for `cqrs-flow up`. Generated from "
        "cqrs_flow/topology/spec.py by `cqrs-flow schema`; `cqrs-flow validate` also checks the "
        "wiring.",
        **_section(spec.TOPOLOGY, ()),
    }


def schema_text() -> str:
    """The schema as the text of topology.schema.json: stable key order, two-space indent."""
    return json.dumps(topology_schema(), indent=2, ensure_ascii=False) + "\n"


# -- containers -------------------------------------------------------------------------------


def _value(kind: Any, path: KeyPath) -> Schema:
    if isinstance(kind, spec.Section):
        return _section(kind, path)
    if isinstance(kind, spec.MapOf):
        # spec.check reads an empty value ('queries:') as an empty mapping, hence null.
        return {
            "type": ["object", "null"],
            "propertyNames": _value(kind.key, path + ("<key>",)),
            "additionalProperties": _value(kind.value, path + ("<name>",)),
        }
    if isinstance(kind, spec.ListOf):
        return {"type": "array", "items": _value(kind.item, path + (0,))}
    if isinstance(kind, spec.ByKind):
        return _by_kind(kind, path)
    return _scalar(kind, path)


def _section(section: spec.Section, path: KeyPath, kind_const: str | None = None) -> Schema:
    properties = {}
    for key, field in section.fields.items():
        properties[key] = {
            **_value(field.type, path + (key,)),
            **_annotations(field, path + (key,)),
        }
    if kind_const is not None and "kind" in properties:
        properties["kind"] = {"const": kind_const}
    mapping: Schema = {"type": "object"}
    if section.doc:
        mapping["description"] = section.doc
    mapping["properties"] = properties
    required = [key for key, field in section.fields.items() if field.required]
    if required:
        mapping["required"] = required
    mapping["additionalProperties"] = False
    if section.one_of:  # exactly one of these keys
        mapping["oneOf"] = [{"required": [key]} for key in section.one_of]
    if section.shorthand is None:
        return mapping
    # A bare value stands for the shorthand key: `listContacts: ListContacts`.
    shorthand = section.fields[section.shorthand]
    return {"anyOf": [_value(shorthand.type, path + (section.shorthand,)), mapping]}


def _by_kind(by_kind: spec.ByKind, path: KeyPath) -> Schema:
    """'kind' picks the section: one if/then per kind, so an editor reports only its keys."""
    kinds = list(by_kind.kinds)
    return {
        "type": "object",
        "properties": {
            "kind": {"enum": kinds, "description": "what the node is: " + ", ".join(kinds)}
        },
        "required": ["kind"],
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
                "then": _section(section, path, kind_const=name),
            }
            for name, section in by_kind.kinds.items()
        ],
    }


def _annotations(field: spec.Field, path: KeyPath) -> Schema:
    out: Schema = {}
    if field.doc:
        out["description"] = field.doc
    if field.default is not None and not field.required:
        out["default"] = _json_default(field.type, field.default, path)
    return out


# -- scalar types -----------------------------------------------------------------------------

# Ports 1-65535, leading zeros allowed (spec.parse_address reads the port with int()).
_PORT = (
    r"0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)


def _pattern(regex_name: str, replace: tuple[str, str] | None = None) -> Schema:
    """A string schema from one of spec.py's own regular expressions (ECMA-compatible ones)."""
    regex = getattr(spec, regex_name, None)
    if regex is None:
        raise UnmappedType(f"spec.{regex_name} is gone; update cqrs_flow/topology/jsonschema.py")
    pattern = regex.pattern
    if replace is not None:
        old, new = replace
        if pattern.count(old) != 1:
            raise UnmappedType(
                f"spec.{regex_name} changed shape: expected {old!r} once in {pattern!r}; "
                "update cqrs_flow/topology/jsonschema.py"
            )
        pattern = pattern.replace(old, new)
    return {"type": "string", "pattern": pattern}


def _endpoint() -> Schema:
    node = spec._NAME.pattern.removeprefix("^").removesuffix("$")
    return {"type": "string", "pattern": rf"^{node}\.(read|write)$"}


def _follows() -> Schema:
    node = spec._NAME.pattern.removeprefix("^").removesuffix("$")
    return {
        "type": "string",
        "pattern": rf"^{node}(\.read)?$",
        "examples": ["reader", "store.read"],
    }


# spec.py function name -> its JSON Schema. By name, so that this table does not break when a
# type is renamed or removed in spec.py; `_scalar` checks the function really is spec's.
_SCALARS: dict[str, Callable[[], Schema]] = {
    "anything": lambda: {},
    "string": lambda: {"type": "string", "minLength": 1},
    "name": lambda: _pattern("_NAME"),
    "full_name": lambda: _pattern("_FULL_NAME"),
    "field_path": lambda: _pattern("_FIELD_PATH"),
    "boolean": lambda: {"type": "boolean"},
    "store_operation": lambda: {
        "type": "string",
        "pattern": rf"^([A-Za-z_][A-Za-z0-9_-]*\.)?({'|'.join(spec.STORE_OPS)})$",
        "examples": ["insert", "Book.delete"],
    },
    "positive_int": lambda: {"type": "integer", "minimum": 1},
    "parse_duration": lambda: {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {**_pattern("_DURATION"), "examples": ["3s", "500ms", "1m"]},
        ]
    },
    "positive_duration": lambda: {
        "anyOf": [
            {"type": "number", "minimum": 0},  # more than 0: spec checks that
            {**_pattern("_DURATION"), "examples": ["10s", "500ms", "1m", "7d"]},
        ]
    },
    "ip_network": lambda: {
        "type": "string",
        "minLength": 1,
        "examples": ["127.0.0.1", "10.0.0.0/8", "::1"],
    },
    "parse_address": lambda: {
        "anyOf": [
            {
                "type": "integer",
                "minimum": 1,
                "maximum": 65535,
                "description": "a port on 127.0.0.1",
            },
            {
                "type": "string",
                "pattern": rf"^(?:\[(?:[^\]]|\](?!:))+\]|(?!\[)[\s\S]+):{_PORT}$",
                "examples": ["127.0.0.1:8080", "0.0.0.0:8080", "[::1]:8080"],
            },
        ]
    },
    "metrics_listen": lambda: {
        "anyOf": [{"const": False, "description": "no metrics"}, _SCALARS["parse_address"]()]
    },
    # spec.topic: not empty, no NUL, no wildcards, not starting with '$'.
    "topic": lambda: {"type": "string", "pattern": r"^(?!\$)[^+#\u0000]+$"},
    # topics.filter_problem: '+' a whole level, '#' a whole level and the last one.
    "topic_filter": lambda: {
        "type": "string",
        "pattern": r"^(?!$)(?!\$)(?:(?:[^/+#]*|\+)/)*(?:[^/+#]*|\+|#)$",
    },
    "broker_url": lambda: _pattern("_URL", (r"(\d+)", f"({_PORT})")),
    "endpoint": _endpoint,
    "follows": _follows,
    "host_name": lambda: _pattern("_HOST_NAME"),
    "origin": lambda: {"anyOf": [{"const": "*"}, _pattern("_ORIGIN")]},
    "claim": lambda: _pattern("_CLAIM"),
    "operation_names": lambda: {
        "anyOf": [
            {"type": "string", "pattern": r"^(\*|[_A-Za-z]\w*)$"},
            {"type": "array", "items": {"type": "string", "pattern": r"^(\*|[_A-Za-z]\w*)$"}},
        ],
        "examples": [["books", "book"], "*"],
    },
    # exactly one of file and url
    "jwks_source": lambda: {
        "anyOf": [
            {
                "type": "object",
                "required": ["file"],
                "additionalProperties": False,
                "properties": {"file": {"type": "string", "minLength": 1}},
                "examples": [{"file": "keys/jwks.json"}],
            },
            {
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {"url": _pattern("_JWKS_URL")},
                "examples": [{"url": "https://auth.example.com/.well-known/jwks.json"}],
            },
        ]
    },
    # exactly one of env and file
    "secret_source": lambda: {
        "anyOf": [
            {
                "type": "object",
                "required": ["env"],
                "additionalProperties": False,
                "properties": {
                    "env": {**_pattern("_ENV_NAME"), "description": "environment variable's name"}
                },
                "examples": [{"env": "MONGODB_URL"}],
            },
            {
                "type": "object",
                "required": ["file"],
                "additionalProperties": False,
                "properties": {
                    "file": {
                        "type": "string",
                        "minLength": 1,
                        "pattern": r"^(?!/)(?!(?:.*/)?\.\.(?:/|$))",
                        "description": "file, relative to the topology file",
                    }
                },
                "examples": [{"file": "secrets/mongodb-url"}],
            },
        ]
    },
}

# Renders a parsed default back into the form a topology file would write it in.
_DEFAULTS: dict[str, Callable[[Any], Any]] = {
    "parse_address": lambda a: f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}",
    "parse_duration": lambda seconds: f"{seconds:g}s",
    "metrics_listen": lambda a: a if a is False else _DEFAULTS["parse_address"](a),
    "positive_duration": lambda seconds: f"{seconds:g}s",
}


def _scalar(kind: Any, path: KeyPath) -> Schema:
    factory, argument = _made_by(kind)
    if factory == "one_of":
        return {"enum": list(argument)}
    if factory == "one_or_many":
        item = _scalar(argument, path)
        return {"anyOf": [item, {"type": "array", "items": item}]}
    name = getattr(kind, "__name__", repr(kind))
    if name in _SCALARS and getattr(spec, name, None) is kind:
        return _SCALARS[name]()
    raise UnmappedType(
        f"{format_path(path) or 'topology'}: no JSON Schema for spec type {name!r}; "
        "add it to _SCALARS in cqrs_flow/topology/jsonschema.py"
    )


def _made_by(kind: Any) -> tuple[str | None, Any]:
    """('one_of', choices) or ('one_or_many', item) for a type spec.py's factories made, else
    (None, None). Reads a `choices`/`item` attribute when spec sets one, else the closure."""
    qualname = getattr(kind, "__qualname__", "")
    if getattr(kind, "__module__", None) != spec.__name__ or ".<locals>." not in qualname:
        return None, None
    factory = qualname.split(".<locals>.")[0]
    wanted = {"one_of": "choices", "one_or_many": "item"}.get(factory)
    if wanted is None:
        return None, None
    if hasattr(kind, wanted):
        return factory, getattr(kind, wanted)
    cells = dict(zip(kind.__code__.co_freevars, kind.__closure__ or (), strict=False))
    if wanted not in cells:
        raise UnmappedType(
            f"spec.{factory} no longer keeps {wanted!r}; "
            "update _made_by in cqrs_flow/topology/jsonschema.py"
        )
    return factory, cells[wanted].cell_contents


def _json_default(kind: Any, default: Any, path: KeyPath) -> Any:
    """The default as it would be written in the file; for a scalar type, checked to read back
    as the same value, so the schema never advertises a default the loader would refuse."""
    if isinstance(kind, (spec.Section, spec.MapOf, spec.ListOf, spec.ByKind)):
        return _plain(default)
    factory, argument = _made_by(kind)
    if factory == "one_or_many":
        written: Any = [_json_default(argument, item, path) for item in default]
    else:
        written = _DEFAULTS.get(getattr(kind, "__name__", ""), _plain)(default)
    try:
        read_back = kind(written)
    except spec.Invalid as exc:
        read_back = exc
    if read_back != default:
        raise UnmappedType(
            f"{format_path(path)}: default {default!r} written as {written!r} reads "
            f"back as {read_back!r}; fix _DEFAULTS in cqrs_flow/topology/jsonschema.py"
        )
    return written


def _plain(value: Any) -> Any:
    """Tuples as lists, mappings as dicts: what JSON can hold."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
