"""Read a GraphQL SDL file into the few facts the framework needs: root fields and their types."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Schema", "SchemaField", "TypeRef", "parse_schema"]


@dataclass(frozen=True)
class TypeRef:
    base: str  # the named type, e.g. Contact
    is_list: bool
    text: str  # as written, e.g. [Contact]!


@dataclass(frozen=True)
class SchemaField:
    owner: str
    name: str
    arguments: dict[str, TypeRef]
    returns: TypeRef


@dataclass(frozen=True)
class Schema:
    text: str
    query_type: str
    mutation_type: str
    subscription_type: str | None  # None: a schema definition that names no subscription type
    queries: dict[str, SchemaField] = field(default_factory=dict)
    mutations: dict[str, SchemaField] = field(default_factory=dict)
    object_fields: dict[str, dict[str, TypeRef]] = field(default_factory=dict)
    input_types: set[str] = field(default_factory=set)
    enums: set[str] = field(default_factory=set)
    input_fields: dict[str, dict[str, TypeRef]] = field(
        default_factory=dict
    )  # input type -> its fields
    enum_values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # enum -> its value names
    # object type -> field -> its arguments (argument -> type)
    object_arguments: dict[str, dict[str, dict[str, TypeRef]]] = field(default_factory=dict)
    other_types: set[str] = field(default_factory=set)  # scalars, interfaces, unions

    def fields_of(self, type_name: str) -> dict[str, TypeRef]:
        return self.object_fields.get(type_name, {})

    def arguments_of(self, type_name: str, field_name: str) -> dict[str, TypeRef]:
        return self.object_arguments.get(type_name, {}).get(field_name, {})

    @property
    def type_names(self) -> set[str]:
        """Every type the schema defines (objects, inputs, enums, scalars, ...)."""
        return set(self.object_fields) | self.input_types | self.enums | self.other_types

    def example_query(self) -> str:
        """A query to show first in the playground: the first list query if there is one."""
        fields = sorted(self.queries.values(), key=lambda f: not f.returns.is_list)
        if not fields:
            return "{ __typename }"
        chosen = fields[0]
        samples = {"Int": "10", "Float": "1.5", "Boolean": "true", "String": '""', "ID": '""'}
        args = ", ".join(
            f"{name}: {samples.get(t.base, 'null')}" for name, t in chosen.arguments.items()
        )
        scalars = [
            name
            for name, t in self.fields_of(chosen.returns.base).items()
            if t.base not in self.object_fields
        ]
        selection = f" {{ {' '.join(scalars)} }}" if scalars else ""
        operation = chosen.name[:1].upper() + chosen.name[1:]
        return (
            f"query {operation} {{\n  {chosen.name}{f'({args})' if args else ''}{selection}\n}}\n"
        )


def _type_ref(node: Any) -> TypeRef:  # a node of tartiflette's parser
    kind = type(node).__name__
    if kind == "NonNullTypeNode":
        inner = _type_ref(node.type)
        return TypeRef(inner.base, inner.is_list, inner.text + "!")
    if kind == "ListTypeNode":
        inner = _type_ref(node.type)
        return TypeRef(inner.base, True, f"[{inner.text}]")
    return TypeRef(node.name.value, False, node.name.value)


def _where(exc: Exception) -> str:
    """' at line L, column C' of a parser error, or '' (its message quotes the text: not used)."""
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    if not isinstance(line, int):
        found = re.search(r"line (\d+), column (\d+)", str(exc))
        if found is None:
            return ""
        line, column = int(found.group(1)), int(found.group(2))
    return f" at line {line}" + (f", column {column}" if isinstance(column, int) else "")


def parse_schema(text: str) -> Schema:
    """Parse SDL text; ValueError with the line and column where it is not valid.

    The error never quotes the text: a file named as the schema by mistake (a secret, a key)
    must not end up in logs.
    """
    from tartiflette.language.parsers.lark import parse_to_document

    try:
        document = parse_to_document(text)
    except Exception as exc:  # the parser raises its own exception types
        raise ValueError(f"not valid GraphQL SDL{_where(exc)}") from None
    roots = {"query": "Query", "mutation": "Mutation"}
    has_schema_definition = any(
        type(d).__name__ == "SchemaDefinitionNode" for d in document.definitions
    )
    objects: dict[str, list[Any]] = {}
    inputs: dict[str, list[Any]] = {}
    enums: dict[str, list[Any]] = {}
    others: set[str] = set()
    for definition in document.definitions:
        kind = type(definition).__name__
        if kind == "SchemaDefinitionNode":
            for operation in definition.operation_type_definitions:
                roots[operation.operation_type] = operation.type.name.value
        elif kind in ("ObjectTypeDefinitionNode", "ObjectTypeExtensionNode"):
            objects.setdefault(definition.name.value, []).extend(definition.fields or [])
        elif kind in ("InputObjectTypeDefinitionNode", "InputObjectTypeExtensionNode"):
            inputs.setdefault(definition.name.value, []).extend(definition.fields or [])
        elif kind in ("EnumTypeDefinitionNode", "EnumTypeExtensionNode"):
            enums.setdefault(definition.name.value, []).extend(definition.values or [])
        elif kind.endswith("TypeDefinitionNode"):  # scalars, interfaces, unions
            others.add(definition.name.value)

    def root_fields(type_name: str) -> dict[str, SchemaField]:
        return {
            f.name.value: SchemaField(
                type_name,
                f.name.value,
                {a.name.value: _type_ref(a.type) for a in f.arguments or []},
                _type_ref(f.type),
            )
            for f in objects.get(type_name, [])
        }

    return Schema(
        text=text,
        query_type=roots["query"],
        mutation_type=roots["mutation"],
        subscription_type=roots.get(
            "subscription", None if has_schema_definition else "Subscription"
        ),
        queries=root_fields(roots["query"]),
        mutations=root_fields(roots["mutation"]),
        object_fields={
            name: {f.name.value: _type_ref(f.type) for f in fields}
            for name, fields in objects.items()
        },
        input_types=set(inputs),
        enums=set(enums),
        input_fields={
            name: {f.name.value: _type_ref(f.type) for f in fields}
            for name, fields in inputs.items()
        },
        enum_values={name: tuple(v.name.value for v in values) for name, values in enums.items()},
        object_arguments={
            name: {
                f.name.value: {a.name.value: _type_ref(a.type) for a in f.arguments or []}
                for f in fields
            }
            for name, fields in objects.items()
        },
        other_types=others,
    )
