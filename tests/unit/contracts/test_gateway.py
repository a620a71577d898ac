"""The gateway's contract: queries and mutations against the schema, the reader and the commands."""

from __future__ import annotations

from cqrs_flow.errors import Problem

from ..helpers import line_of
from .support import at, text_of

# -- gateway: queries -------------------------------------------------------------------------


def test_query_field_without_a_mapping(contracts, make_project):
    path = make_project(
        schema=[
            (
                "  listContacts(count: Int!): [Contact]\n",
                "  listContacts(count: Int!): [Contact]\n  searchContacts(q: String): [Contact]\n",
            )
        ]
    )
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "queries:"),
            "nodes.gateway.queries",
            "Query.searchContacts in schema/contacts.graphql has no mapping; add 'searchContacts: "
            "<reader RPC>' "
            "under queries",
        )
    ]


def test_mapping_for_a_query_field_not_in_the_schema(contracts, make_project):
    path = make_project(
        yaml=[
            (
                "      listContacts: ListContacts\n",
                "      listContacts: ListContacts\n      findContacts: ListContacts\n",
            )
        ]
    )
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "findContacts:"),
            "nodes.gateway.queries.findContacts",
            "schema/contacts.graphql has no field Query.findContacts",
        )
    ]


def test_mutation_field_without_a_mapping_and_mapping_without_a_field(contracts, make_project):
    path = make_project(
        schema=[
            (
                "  deleteContact(id: String!): RequestResponse\n",
                "  removeContact(id: String!): RequestResponse\n",
            )
        ]
    )
    problems = contracts(path)
    assert at(problems, "nodes.gateway.mutations") == [
        "Mutation.removeContact in schema/contacts.graphql has no mapping; add 'removeContact: "
        "<command>' "
        "under mutations"
    ]
    assert at(problems, "nodes.gateway.mutations.deleteContact") == [
        "schema/contacts.graphql has no field Mutation.deleteContact"
    ]


def test_graphql_argument_with_no_matching_request_field(contracts, make_project):
    path = make_project(
        schema=[("listContacts(count: Int!)", "listContacts(count: Int!, page: Int)")]
    )
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "listContacts: ListContacts"),
            "nodes.gateway.queries.listContacts",
            "argument 'page' of Query.listContacts matches no field of "
            "contacts.ListContactsRequest; "
            "map it with 'arguments: {page: <field path>}'",
        )
    ]


def test_graphql_argument_mapped_explicitly(contracts, make_project):
    path = make_project(
        schema=[("listContacts(count: Int!)", "listContacts(first: Int!)")],
        yaml=[
            (
                "      listContacts: ListContacts\n",
                "      listContacts: {rpc: ListContacts, arguments: {first: count}}\n",
            )
        ],
    )
    assert contracts(path) == []


def test_graphql_argument_of_the_wrong_type(contracts, make_project):
    path = make_project(schema=[("listContacts(count: Int!)", "listContacts(count: String!)")])
    assert at(contracts(path), "nodes.gateway.queries.listContacts") == [
        "argument 'count: String!' of Query.listContacts does not fit "
        "contacts.ListContactsRequest.count: "
        "String cannot fill contacts.ListContactsRequest.count (int32)"
    ]


def test_list_query_answered_by_a_single_field(contracts, make_project):
    path = make_project(
        schema=[("listContacts(count: Int!): [Contact]", "listContacts(count: Int!): Contact")]
    )
    assert at(contracts(path), "nodes.gateway.queries.listContacts.result") == [
        "Query.listContacts returns Contact but contacts.ListContactsResponse.contacts is a list"
    ]


def test_query_naming_an_rpc_the_reader_lacks(contracts, make_project):
    path = make_project(yaml=[("      contact: GetContact\n", "      contact: GetContacts\n")])
    assert at(contracts(path), "nodes.gateway.queries.contact.rpc") == [
        "contacts.ContactReader (reader 'reader') has no RPC 'GetContacts'"
    ]


# -- gateway: mutations -----------------------------------------------------------------------


def test_unknown_placeholder_in_a_message_template(contracts, make_project):
    path = make_project(yaml=[("message: Queued to add", "message: Queued {nmae}")])
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "Queued {nmae}"),
            "nodes.gateway.mutations.addContact.message",
            "template 'Queued {nmae}' uses {nmae}; it may use {entity}, {id}, {name}",
        )
    ]


def test_malformed_message_template(contracts, make_project):
    path = make_project(yaml=[("message: Queued to add", "message: 'Queued {'")])
    assert at(contracts(path), "nodes.gateway.mutations.addContact.message") == [
        "bad message template 'Queued {': Single '{' encountered in format string"
    ]


def test_not_found_template_is_checked_too(contracts, make_project):
    path = make_project(
        yaml=[
            (
                "        message: Queued to update\n",
                "        message: Queued to update\n        not_found: '{entity} {key} gone'\n",
            )
        ]
    )
    assert at(contracts(path), "nodes.gateway.mutations.updateContact.not_found") == [
        "template '{entity} {key} gone' uses {key}; it may use {entity}, {id}, {name}"
    ]


def test_templates_may_use_the_entity_id_and_arguments(contracts, make_project):
    path = make_project(
        yaml=[("message: Queued to update", "message: 'Queued: {entity} {id} as {name}'")]
    )
    assert contracts(path) == []


def test_generated_field_that_does_not_exist(contracts, make_project):
    path = make_project(yaml=[("generate: {contact.id: uuid}", "generate: {contact.uid: uuid}")])
    assert at(contracts(path), "nodes.gateway.mutations.addContact.generate.contact.uid") == [
        "contacts.Contact has no field 'uid' (fields: id, name, last_updated)"
    ]


def test_exists_rpc_that_cannot_be_asked(contracts, make_project):
    path = make_project(
        yaml=[
            (
                "exists: GetContact\n        message: Queued to update",
                "exists: ListContacts\n        message: Queued to update",
            )
        ]
    )
    assert at(contracts(path), "nodes.gateway.mutations.updateContact.exists") == [
        "no argument of Mutation.updateContact matches a field of contacts.ListContactsRequest, "
        "so 'ListContacts' cannot be asked"
    ]


def test_mutation_argument_mapped_to_a_missing_field(contracts, make_project):
    path = make_project(
        yaml=[
            (
                "        command: update_contact\n",
                "        command: update_contact\n        arguments: {name: contact.nam}\n",
            )
        ]
    )
    assert at(contracts(path), "nodes.gateway.mutations.updateContact.arguments.name") == [
        "contacts.Contact has no field 'nam' (fields: id, name, last_updated)"
    ]


def test_mutation_must_return_status_and_message(contracts, make_project):
    path = make_project(
        schema=[
            ("deleteContact(id: String!): RequestResponse", "deleteContact(id: String!): Contact")
        ]
    )
    assert at(contracts(path), "nodes.gateway.mutations.deleteContact") == [
        "Mutation.deleteContact must return a type with fields status and message (like "
        "RequestResponse); "
        "Contact lacks message, status"
    ]


def test_invalid_sdl_is_reported_at_the_schema_key(contracts, make_project):
    path = make_project(schema=[("type Query {", "type Query {{")])
    problems = contracts(path)
    assert [p.path for p in problems] == ["nodes.gateway.schema"]
    assert problems[0].message.startswith("schema/contacts.graphql: not valid GraphQL SDL")
    assert problems[0].line == line_of(text_of(path), "schema: schema/contacts.graphql")
