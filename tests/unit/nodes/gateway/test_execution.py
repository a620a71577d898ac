"""Operations answers every request as tartiflette's Engine.execute does, errors included: each
case runs both ways on the same engine and the answers are compared whole."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from tartiflette import Directive, Resolver, create_engine

from cqrs_flow.nodes.gateway.execution import Operations

SDL = """
type Contact { id: String! name: String! tags: [String!] }
input Tagging { tag: String!, times: Int = 1 }
type Query {
  contact(id: String!): Contact
  contacts(count: Int = 2, after: String): [Contact!]!
  broken: Contact
}
type Mutation { addContact(name: String!, tagging: Tagging): Contact }
"""
_names = itertools.count()


def _engine(sdl: str = SDL, directive: bool = False) -> tuple[Any, str]:
    name = f"execution-{next(_names)}"

    @Resolver("Query.contact", schema_name=name)
    async def contact(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
        return None if args["id"] == "none" else {"id": args["id"], "name": "Ann", "tags": []}

    @Resolver("Query.contacts", schema_name=name)
    async def contacts(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
        return [
            {"id": str(i), "name": f"n{i}", "tags": [args.get("after")]}
            for i in range(args["count"])
        ]

    @Resolver("Query.broken", schema_name=name)
    async def broken(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
        raise RuntimeError("the store is away")

    @Resolver("Mutation.addContact", schema_name=name)
    async def add(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
        tagging = args.get("tagging") or {}
        return {
            "id": "1",
            "name": args["name"],
            "tags": [tagging.get("tag")] * tagging.get("times", 0),
        }

    if directive:

        @Directive("audited", schema_name=name)
        class Audited:
            async def on_schema_execution(
                self,
                directive_args: Any,
                next_: Any,
                schema: Any,
                document: Any,
                parsing_errors: Any,
                operation_name: Any,
                context: Any,
                variables: Any,
                initial_value: Any,
            ) -> Any:
                answer = await next_(
                    schema,
                    document,
                    parsing_errors,
                    operation_name,
                    context,
                    variables,
                    initial_value,
                )
                return {**answer, "extensions": {"audited": True}}

        sdl = (
            "directive @audited on SCHEMA\nschema @audited { query: Query mutation: Mutation }\n"
            + sdl
        )
    engine = asyncio.run(create_engine(sdl, schema_name=name, coerce_parent_concurrently=False))
    return engine, name


ENGINE, _ = _engine()

CASES = [
    ("query One($id: String!) { contact(id: $id) { id name } }", None, {"id": "a"}),
    ("query One($id: String!) { contact(id: $id) { id name } }", None, {"id": "none"}),
    ("query One($id: String!) { contact(id: $id) { id } }", None, {}),  # not provided
    ("query One($id: String!) { contact(id: $id) { id } }", None, {"id": None}),  # null
    ("query One($id: String!) { contact(id: $id) { id } }", None, {"id": 12}),  # wrong type
    ("query One($id: String!) { contact(id: $id) { id } }", None, None),
    ("query L($n: Int = 3) { contacts(count: $n) { id tags } }", None, {}),  # default
    ("query L($n: Int = 3) { contacts(count: $n) { id } }", None, {"n": "x"}),
    (
        "query L($n: Int, $a: String) { contacts(count: $n, after: $a) { id tags } }",
        None,
        {"n": 1, "a": "z"},
    ),
    ("{ contacts { ...Parts } } fragment Parts on Contact { id name }", None, None),
    ('query A { contact(id: "a") { id } } query B { contacts { id } }', "B", None),
    ('query A { contact(id: "a") { id } } query B { contacts { id } }', "C", None),
    ('query A { contact(id: "a") { id } } query B { contacts { id } }', None, None),
    ('query A { contact(id: "a") { id } }', "A", None),
    ('query A { contact(id: "a") { id } }', "B", None),
    ('{ contact(id: "a") { nope } }', None, None),  # does not validate
    ("{ contact(id: ", None, None),  # does not parse
    ("{ broken { id } }", None, None),  # a resolver raises
    ("mutation M($name: String!) { addContact(name: $name) { id name } }", None, {"name": "Bo"}),
    (
        'mutation M($t: Tagging) { addContact(name: "x", tagging: $t) { tags } }',
        None,
        {"t": {"tag": "a", "times": 2}},
    ),
    (
        'mutation M($t: Tagging) { addContact(name: "x", tagging: $t) { tags } }',
        None,
        {"t": {"tag": "a"}},
    ),
    (
        'mutation M($t: Tagging) { addContact(name: "x", tagging: $t) { tags } }',
        None,
        {"t": {"times": 1}},
    ),
    ('{ __typename contact(id: "a") { __typename id } }', None, None),
]


@pytest.mark.parametrize("query, operation, variables", CASES)
def test_answers_as_the_engine_does(query: str, operation: str | None, variables: Any) -> None:
    operations = Operations(ENGINE)
    assert operations.direct

    async def both() -> tuple[Any, Any, Any]:
        expected = await ENGINE.execute(query, operation_name=operation, variables=variables)
        first = await operations.execute(query, operation_name=operation, variables=variables)
        again = await operations.execute(query, operation_name=operation, variables=variables)
        return expected, first, again

    expected, first, again = asyncio.run(both())
    assert first == expected
    assert again == expected  # the second time from the plan kept for the document


def test_a_plan_is_made_once_per_document_and_operation_and_kept_within_bounds() -> None:
    operations = Operations(ENGINE, plans=2)
    texts = [f"query Q{i}($id: String!) {{ contact(id: $id) {{ id }} }}" for i in range(3)]

    async def scenario() -> list[Any]:
        answers = []
        for text in texts + texts[-1:]:
            answers.append(await operations.execute(text, variables={"id": "k"}))
        return answers

    answers = asyncio.run(scenario())
    assert all(a == {"data": {"contact": {"id": "k"}}} for a in answers)
    assert len(operations._plans) == 2  # the oldest went
    kept = list(operations._plans.values())
    document = ENGINE._cached_parse_and_validate_query(texts[-1], ENGINE._schema)[0]
    assert kept[-1].document is document


def test_an_engine_with_schema_execution_hooks_is_left_to_the_engine() -> None:
    engine, _ = _engine(directive=True)
    operations = Operations(engine)
    assert not operations.direct
    answer = asyncio.run(operations.execute('{ contact(id: "a") { id } }'))
    assert answer == {"data": {"contact": {"id": "a"}}, "extensions": {"audited": True}}
