"""Introspection as clients send it today: graphql-js 16's getIntrospectionQuery with every
option on, and the Python gql client's default schema fetch, are answered; the schema they
download is the user's SDL with the additions cqrs-flow documents, and nothing of the engine's."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import graphql
import pytest
from tartiflette import create_engine

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.gateway.cost import Costs
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.introspection import MODULE, serve_user_types
from cqrs_flow.nodes.gateway.limits import RequestGate
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.resolvers import Resolvers, served_sdl
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import Limits
from cqrs_flow.topology.problems import Problems

from ...helpers import ROOT
from .fakes import FakeMqtt

# What graphql-js 16's getIntrospectionQuery asks with every option on (graphql-core writes
# the same query).
EVERY_OPTION = graphql.get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
    one_of=True,
)
_NAMES = itertools.count()


def execute(engine: Any, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = asyncio.run(engine.execute(query, variables=variables))
    return result


def engine_of(sdl: str) -> Any:
    """An engine of `sdl` made as the gateway makes its own (its introspection, its types)."""

    async def make() -> Any:
        engine = await create_engine(
            sdl, schema_name=f"introspection-{next(_NAMES)}", modules=[MODULE]
        )
        serve_user_types(engine._schema, sdl)
        return engine

    return asyncio.run(make())


def gateway_engine(topology_file: Path, cache: Path) -> tuple[Any, str]:
    """The engine of a topology's gateway as the node makes it, and the SDL it serves."""
    topology = load_topology(topology_file)
    protos = compile_protos(list(topology.protos), topology.root, cache=cache)
    plan = gateway_plan(topology, topology.nodes["gateway"], protos, Problems(topology.located))
    assert plan is not None

    async def make() -> Any:
        delivery = Delivery(topology.status_topic, FakeMqtt(), Outbox(60.0), logging.getLogger())
        resolvers = Resolvers(None, [], delivery, 50, logging.getLogger())  # type: ignore[arg-type]
        return await resolvers.engine(plan, "introspection")

    return asyncio.run(make()), served_sdl(plan)


def downloaded(engine: Any, query: str = EVERY_OPTION) -> graphql.GraphQLSchema:
    """The schema a client builds from the answer to `query`, which has no error."""
    result = execute(engine, query)
    assert "errors" not in result, result["errors"]
    return graphql.build_client_schema(result["data"])


def printed(schema: graphql.GraphQLSchema) -> str:
    return graphql.print_schema(graphql.lexicographic_sort_schema(schema))


@pytest.mark.parametrize(
    "topology_file", [ROOT / "topology.yaml", ROOT / "examples" / "library" / "topology.yaml"]
)
def test_every_option_of_graphql_js_16_is_answered_with_the_users_schema(topology_file, tmp_path):
    engine, sdl = gateway_engine(topology_file, tmp_path)
    served = downloaded(engine)
    written = graphql.build_schema(sdl)
    assert printed(served) == printed(written)  # descriptions and all
    assert graphql.find_breaking_changes(written, served) == []
    assert graphql.find_dangerous_changes(written, served) == []
    # Nothing of the engine's own: a code generator with strict scalars has nothing to map.
    names = set(served.type_map)
    assert not names & {"Date", "DateTime", "Time"}
    assert {d.name for d in served.directives} == {d.name for d in graphql.specified_directives}


def test_the_gql_clients_default_schema_fetch_is_answered(tmp_path):
    from gql.utilities import get_introspection_query_ast

    engine, sdl = gateway_engine(ROOT / "topology.yaml", tmp_path)
    query = graphql.print_ast(get_introspection_query_ast())
    assert "includeDeprecated" in query  # what tartiflette alone refused
    assert printed(downloaded(engine, query)) == printed(graphql.build_schema(sdl))


def test_the_directives_are_those_of_graphql_js_16_word_for_word():
    served = {d.name: d for d in downloaded(engine_of("type Query { a: Int }")).directives}
    # graphql-core's, which are graphql-js 16's but for @deprecated's reason: String! there (as in
    # the specification's latest edition), String in graphql-js 16, whose tools compare with it.
    standard = {d.name: d for d in graphql.specified_directives}
    assert set(served) == set(standard) == {"include", "skip", "deprecated", "specifiedBy", "oneOf"}
    for name, directive in standard.items():
        mine = served[name]
        assert mine.description == directive.description
        assert mine.locations == directive.locations
        assert mine.is_repeatable is False
        assert list(mine.args) == list(directive.args)
        for arg, definition in directive.args.items():
            wanted = "String" if (name, arg) == ("deprecated", "reason") else str(definition.type)
            assert str(mine.args[arg].type) == wanted
            assert mine.args[arg].description == definition.description
            assert mine.args[arg].default_value == definition.default_value
    assert [loc.name for loc in served["deprecated"].locations][:4] == [
        "FIELD_DEFINITION",  # the specification's four
        "ARGUMENT_DEFINITION",
        "INPUT_FIELD_DEFINITION",
        "ENUM_VALUE",
    ]


def test_default_values_are_written_as_graphql_writes_them():
    sdl = (
        "enum Dir { ASC DESC } input P { a: Int }\n"
        'input O { d: Dir = ASC, s: String = "say \\"hi\\"", l: [Int] = [1, 2], o: P = {a: 1}, '
        "b: Boolean = true }\n"
        "type Query { q(o: O): Int }"
    )
    answer = execute(engine_of(sdl), '{ __type(name: "O") { inputFields { name defaultValue } } }')
    assert {f["name"]: f["defaultValue"] for f in answer["data"]["__type"]["inputFields"]} == {
        "d": "ASC",
        "s": '"say \\"hi\\""',
        "l": "[1, 2]",
        "o": "{a: 1}",
        "b": "true",
    }
    assert printed(downloaded(engine_of(sdl))) == printed(graphql.build_schema(sdl))


ONE_OF = """
input Pick @oneOf { id: String, name: String }
type Query { find(by: Pick!): String }
"""


def test_a_oneof_input_object_takes_exactly_one_field_and_says_so():
    engine = engine_of(ONE_OF)
    answer = execute(engine, '{ p: __type(name: "Pick") { isOneOf } }')
    assert answer["data"]["p"] == {"isOneOf": True}
    assert printed(downloaded(engine)) == printed(graphql.build_schema(ONE_OF))
    for query, variables in (
        ('{ find(by: {id: "a", name: "b"}) }', None),
        ("{ find(by: {}) }", None),
        ("{ find(by: {id: null}) }", None),
        ("query ($by: Pick!) { find(by: $by) }", {"by": {"id": "a", "name": "b"}}),
        ("query ($by: Pick!) { find(by: $by) }", {"by": {"name": None}}),
    ):
        refused = execute(engine, query, variables)  # an error, and `find` did not run
        assert refused["data"] in (None, {"find": None}), (query, refused)
        assert "exactly one field" in str(refused["errors"]), (query, refused)
    for query, variables in (
        ('{ find(by: {id: "a"}) }', None),
        ("query ($by: Pick!) { find(by: $by) }", {"by": {"name": "b"}}),
    ):
        assert execute(engine, query, variables) == {"data": {"find": None}}


@pytest.mark.parametrize("field", ["id: String!", 'id: String = "x"'])
def test_a_oneof_input_object_with_a_required_or_defaulted_field_is_refused(field):
    with pytest.raises(
        NodeError, match=r"input Pick is @oneOf, so its field 'id' must be nullable"
    ):
        engine_of(
            f"input Pick @oneOf {{ {field}, name: String }} type Query {{ find(by: Pick): Int }}"
        )


def test_the_engines_scalars_and_directive_are_shown_only_when_the_sdl_uses_them():
    plain = execute(
        engine_of('"A Date in a description names no type." type Query { a: Int }'),
        '{ __schema { types { name } directives { name } } d: __type(name: "Date") { name } }',
    )["data"]
    assert not {t["name"] for t in plain["__schema"]["types"]} & {"Date", "DateTime", "Time"}
    assert "nonIntrospectable" not in {d["name"] for d in plain["__schema"]["directives"]}
    assert plain["d"] is None
    # The introspection types are types of the schema too (the specification lists them).
    assert {"__Schema", "__Type", "__Directive"} <= {t["name"] for t in plain["__schema"]["types"]}

    sdl = "type Query { born: Date, secret: String @nonIntrospectable, a: Int }"
    used = engine_of(sdl)
    answer = execute(
        used,
        '{ __schema { types { name } directives { name } } q: __type(name: "Query") '
        "{ fields { name } } }",
    )["data"]
    names = {t["name"] for t in answer["__schema"]["types"]}
    assert "Date" in names and not names & {"DateTime", "Time"}
    assert "nonIntrospectable" in {d["name"] for d in answer["__schema"]["directives"]}
    assert [f["name"] for f in answer["q"]["fields"]] == ["born", "a"]  # secret stays hidden


def test_a_hidden_scalar_is_no_type_of_the_schema():
    answer = execute(
        engine_of("type Query { a(n: Int): Int }"),
        "query ($d: Date) { a(n: $d) }",
        {"d": "2024-01-01"},
    )
    assert answer["data"] is None and "Date" in answer["errors"][0]["message"]


INPUTS = """
input Range {
  from: Int, to: Int @deprecated(reason: "use until"), until: Int, old: Int @deprecated
}
type Query {
  span(range: Range, limit: Int @deprecated(reason: "always 10")): Int
  legacy: Int @deprecated
}
"""


def test_deprecated_arguments_and_input_fields_are_shown_only_when_asked_for():
    engine = engine_of(INPUTS)
    answer = execute(
        engine,
        """{
          range: __type(name: "Range") {
            inputFields { name }
            every: inputFields(includeDeprecated: true) { name isDeprecated deprecationReason }
          }
          query: __type(name: "Query") {
            fields { name args { name } }
            every: fields(includeDeprecated: true) {
              name isDeprecated
              args(includeDeprecated: true) { name isDeprecated deprecationReason }
            }
          }
        }""",
    )["data"]
    assert [f["name"] for f in answer["range"]["inputFields"]] == ["from", "until"]
    assert answer["range"]["every"] == [
        {"name": "from", "isDeprecated": False, "deprecationReason": None},
        {"name": "to", "isDeprecated": True, "deprecationReason": "use until"},
        {"name": "until", "isDeprecated": False, "deprecationReason": None},
        {"name": "old", "isDeprecated": True, "deprecationReason": "No longer supported"},
    ]
    assert answer["query"]["fields"] == [{"name": "span", "args": [{"name": "range"}]}]
    span, legacy = answer["query"]["every"]
    assert legacy == {"name": "legacy", "isDeprecated": True, "args": []}
    assert span["args"][1] == {
        "name": "limit",
        "isDeprecated": True,
        "deprecationReason": "always 10",
    }
    # A client that asks for everything builds the same schema as the SDL's.
    assert printed(downloaded(engine)) == printed(graphql.build_schema(INPUTS))


def test_specified_by_url_is_the_scalars_and_the_rest_is_null():
    sdl = 'extend scalar DateTime @specifiedBy(url: "https://www.rfc-editor.org/rfc/rfc3339")\n'
    sdl += "input Span { a: Int } type Query { at(span: Span): DateTime }"
    answer = execute(
        engine_of(sdl),
        """{ __schema { description }
             t: __type(name: "DateTime") { specifiedByURL isOneOf }
             s: __type(name: "String") { specifiedByURL }
             i: __type(name: "Span") { isOneOf specifiedByURL }
             q: __type(name: "Query") { isOneOf }
             __schema2: __schema { directives { name isRepeatable } } }""",
    )
    assert "errors" not in answer, answer
    data = answer["data"]
    assert data["__schema"] == {"description": None}
    assert data["t"] == {
        "specifiedByURL": "https://www.rfc-editor.org/rfc/rfc3339",
        "isOneOf": None,
    }
    assert data["s"] == {"specifiedByURL": None}
    assert data["i"] == {"isOneOf": False, "specifiedByURL": None}  # no OneOf input objects here
    assert data["q"] == {"isOneOf": None}
    assert {d["isRepeatable"] for d in data["__schema2"]["directives"]} == {False}


def test_the_default_limits_admit_the_introspection_clients_send(tmp_path):
    from gql.utilities import get_introspection_query_ast

    engine, _ = gateway_engine(ROOT / "examples" / "library" / "topology.yaml", tmp_path)
    gate = RequestGate(Limits(), costs=Costs.of(engine, 100))
    every = graphql.get_introspection_query(
        True, True, True, True, True, experimental_directive_deprecation=True, one_of=True
    )
    for query in (EVERY_OPTION, every, graphql.print_ast(get_introspection_query_ast())):
        gate.check(query, None)
        assert "errors" not in execute(engine, query)


# -- per role -------------------------------------------------------------------------------------

ROLES_SDL = """
type Book { id: String! title: String secret: String loans: [Loan!] }
type Loan { id: String! member: String }
input BookWhere { title: String secret: String }
input LendInput { book: String! member: String! }
type Query { books(where: BookWhere): [Book] loans: [Loan] }
type Mutation { lend(loan: LendInput): String drop(id: String!): String }
"""


def test_introspection_shows_each_role_its_own_schema_built_once():
    from cqrs_flow.contracts.auth import RolePlan
    from cqrs_flow.nodes.gateway.introspection import RoleViews, serve_role_views
    from cqrs_flow.plugins import CALLER, Caller

    engine = engine_of(ROLES_SDL)
    roles = {
        "reader": RolePlan(
            "reader",
            frozenset({"books"}),
            frozenset(),
            None,
            hidden={"Book": frozenset({"secret", "loans"})},
        ),
        "lender": RolePlan("lender", frozenset({"books", "loans"}), frozenset({"lend"}), None),
    }
    views = RoleViews(engine._schema, roles, lambda: roles.get(CALLER.get().role or ""))
    serve_role_views(engine._schema, views)
    built = dict(views.views)
    query = graphql.get_introspection_query()

    def schema_as(role: str | None) -> graphql.GraphQLSchema:
        async def fetch() -> Any:
            CALLER.set(Caller(subject="x", role=role))
            return await engine.execute(query)

        answer = asyncio.run(fetch())
        assert "errors" not in answer, answer
        return graphql.build_client_schema(answer["data"])  # a valid schema, as a client builds

    reader = schema_as("reader")
    graphql.assert_valid_schema(reader)
    assert set(reader.query_type.fields) == {"books"}
    assert reader.mutation_type is None  # no mutation to discover
    assert set(reader.type_map["Book"].fields) == {"id", "title"}
    assert set(reader.type_map["BookWhere"].fields) == {"title"}  # no filter on a hidden field
    assert not {"Loan", "LendInput"} & set(reader.type_map)

    lender = schema_as("lender")
    assert set(lender.mutation_type.fields) == {"lend"}
    assert {"Loan", "LendInput"} <= set(lender.type_map)
    assert "drop" not in lender.mutation_type.fields

    everyone = schema_as(None)  # no rules: the whole schema
    assert set(everyone.mutation_type.fields) == {"lend", "drop"}
    assert set(everyone.type_map["Book"].fields) == {"id", "title", "secret", "loans"}

    async def look(role: str) -> Any:
        CALLER.set(Caller(subject="x", role=role))
        return await engine.execute('{ loan: __type(name: "Loan") { name } }')

    assert asyncio.run(look("reader"))["data"] == {"loan": None}
    assert asyncio.run(look("lender"))["data"] == {"loan": {"name": "Loan"}}
    assert views.views == built and all(views.views[n] is built[n] for n in built)  # not rebuilt
