"""plans.check_contracts: problems between the topology, its protos and its GraphQL schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_flow.contracts.plans import check_contracts
from cqrs_flow.errors import Problem, ProtoError
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology

from ..helpers import SHIPPED, line_of


@pytest.fixture
def contracts(proto_cache):
    """topology file -> the contract problems of it (protos compiled into the test's cache)."""

    def run(path: Path) -> list[Problem]:
        topology = load_topology(path)
        protos = compile_protos(list(topology.protos), topology.root)
        return check_contracts(topology, protos)

    return run


def at(problems: list[Problem], path: str) -> list[str]:
    return [p.message for p in problems if p.path == path]


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_shipped_topology_has_no_contract_problems(contracts, proto_cache):
    assert contracts(SHIPPED) == []
    assert list((proto_cache / "protos").glob("*.pb")), (
        "compile_protos caches under $CQRS_FLOW_CACHE"
    )


def test_an_unedited_copy_has_no_contract_problems(contracts, make_project):
    assert contracts(make_project()) == []


def test_compiled_protos_are_cached(proto_cache):
    topology = load_topology(SHIPPED)
    first = compile_protos(list(topology.protos), topology.root)
    cached = list((proto_cache / "protos").glob("*.pb"))
    assert len(cached) == 1 and first.path == cached[0]
    written = first.path.stat().st_mtime_ns
    again = compile_protos(list(topology.protos), topology.root)
    assert again.path == first.path
    assert first.path.stat().st_mtime_ns == written  # not compiled again
    assert set(again.message_descriptor("contacts.Contact").fields_by_name) == {
        "id",
        "name",
        "last_updated",
    }


def test_changing_a_proto_recompiles(make_project, proto_cache):
    topology = load_topology(make_project())
    before = compile_protos(list(topology.protos), topology.root)
    proto = topology.root / topology.protos[0]
    proto.write_text(
        proto.read_text().replace(
            "string last_updated = 3;", "string last_updated = 3;\n  int32 age = 4;"
        )
    )
    after = compile_protos(list(topology.protos), topology.root)
    assert after.path != before.path
    assert "age" in after.message_descriptor("contacts.Contact").fields_by_name
    assert len(list((proto_cache / "protos").glob("*.pb"))) == 2


def test_broken_proto_is_a_proto_error(make_project, proto_cache):
    path = make_project(proto=[("message Contact {", "message Contact {{")])
    topology = load_topology(path)
    with pytest.raises(ProtoError, match="protoc could not compile contacts.proto"):
        compile_protos(list(topology.protos), topology.root)


# -- store ------------------------------------------------------------------------------------


def test_rpc_missing_from_the_proto(contracts, make_project):
    path = make_project(
        proto=[
            (
                "  rpc GetContact(GetContactRequest) returns (GetContactResponse);\n"
                "  rpc ListContacts(ListContactsRequest) returns (ListContactsResponse);\n"
                "}\n\n// The reader",
                "  rpc FetchContact(GetContactRequest) returns (GetContactResponse);\n"
                "  rpc ListContacts(ListContactsRequest) returns (ListContactsResponse);\n"
                "}\n\n// The reader",
            )
        ]
    )
    problems = contracts(path)
    text = text_of(path)
    assert (
        Problem(
            line_of(text, "GetContact: get"),
            "nodes.store.read.rpcs.GetContact",
            "service 'contacts.ContactReadService' has no RPC 'GetContact'; did you mean 'FetchContact'?",
        )
        in problems
    )
    assert at(problems, "nodes.store.read.rpcs") == [
        "contacts.ContactReadService has RPCs with no operation: FetchContact"
    ]
    # The reader forwards GetContact by name, which now goes nowhere.
    assert any(
        "forwards to contacts.ContactReadService.GetContact, which does not exist" in m
        for m in at(problems, "nodes.reader.service")
    )


def test_rpc_name_misspelled_in_the_topology(contracts, make_project):
    path = make_project(yaml=[("AddContact: insert", "AddContakt: insert")])
    problems = contracts(path)
    assert at(problems, "nodes.store.write.rpcs.AddContakt") == [
        "service 'contacts.ContactWriteService' has no RPC 'AddContakt'; did you mean 'AddContact'?"
    ]
    assert at(problems, "nodes.store.write.rpcs") == [
        "contacts.ContactWriteService has RPCs with no operation: AddContact"
    ]
    assert at(problems, "commands.add_contact.rpc") == [
        "'AddContact' is not an RPC of store's write service (contacts.ContactWriteService)"
    ]


def test_read_service_mapping_an_rpc_to_a_write_operation(contracts, make_project):
    path = make_project(yaml=[("GetContact: get", "GetContact: insert")])
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "GetContact: insert"),
            "nodes.store.read.rpcs.GetContact",
            "'insert' is a write operation; the read service may only get, list",
        )
    ]


def test_write_service_mapping_an_rpc_to_a_read_operation(contracts, make_project):
    path = make_project(yaml=[("DeleteContact: delete", "DeleteContact: get")])
    assert at(contracts(path), "nodes.store.write.rpcs.DeleteContact") == [
        "'get' is a read operation; the write service may only delete, delete_many, insert, insert_many, update"
    ]


def test_operation_that_does_not_fit_the_rpc(contracts, make_project):
    path = make_project(yaml=[("ListContacts: list", "ListContacts: get")])
    assert at(contracts(path), "nodes.store.read.rpcs.ListContacts") == [
        "ListContacts (get) needs a string field 'id' in contacts.ListContactsRequest"
    ]


def test_document_type_that_does_not_exist(contracts, make_project):
    path = make_project(yaml=[("document: contacts.Contact", "document: contacts.Contakt")])
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "document:"),
            "nodes.store.document",
            "no message 'contacts.Contakt' in the protos; did you mean 'contacts.Contact'?",
        )
    ]


def test_timestamp_must_be_a_string_field_of_the_document(contracts, make_project):
    path = make_project(yaml=[("timestamp: last_updated", "timestamp: updated")])
    assert at(contracts(path), "nodes.store.timestamp") == [
        "contacts.Contact has no string field 'updated'"
    ]


def test_service_that_does_not_exist(contracts, make_project):
    path = make_project(
        yaml=[("service: contacts.ContactReader\n", "service: contacts.ContactReaders\n")]
    )
    assert at(contracts(path), "nodes.reader.service") == [
        "no service 'contacts.ContactReaders' in the protos; did you mean 'contacts.ContactReader'?"
    ]


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
            "Query.searchContacts in schema/contacts.graphql has no mapping; add 'searchContacts: <reader RPC>' "
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
        "Mutation.removeContact in schema/contacts.graphql has no mapping; add 'removeContact: <command>' "
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
            "argument 'page' of Query.listContacts matches no field of contacts.ListContactsRequest; "
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
        "argument 'count: String!' of Query.listContacts does not fit contacts.ListContactsRequest.count: "
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
        "Mutation.deleteContact must return a type with fields status and message (like RequestResponse); "
        "Contact lacks message, status"
    ]


def test_invalid_sdl_is_reported_at_the_schema_key(contracts, make_project):
    path = make_project(schema=[("type Query {", "type Query {{")])
    problems = contracts(path)
    assert [p.path for p in problems] == ["nodes.gateway.schema"]
    assert problems[0].message.startswith("schema/contacts.graphql: not valid GraphQL SDL")
    assert problems[0].line == line_of(text_of(path), "schema: schema/contacts.graphql")


def test_problems_of_different_nodes_are_all_reported(contracts, make_project):
    path = make_project(
        yaml=[
            ("GetContact: get", "GetContact: insert"),
            ("message: Queued to add", "message: Queued {nmae}"),
            ("timestamp: last_updated", "timestamp: updated"),
        ]
    )
    assert {p.path for p in contracts(path)} == {
        "nodes.store.read.rpcs.GetContact",
        "nodes.gateway.mutations.addContact.message",
        "nodes.store.timestamp",
    }


# -- command ids and entity keys ------------------------------------------------------------

DELETE_REQUEST = "message DeleteContactRequest { string id = 1; string command_id = 15; }"


@pytest.mark.parametrize(
    "field, what",
    [("repeated string command_id = 15;", "repeated"), ("int64 command_id = 15;", "of type int64")],
)
def test_a_command_id_field_must_be_one_string(contracts, make_project, field, what):
    path = make_project(
        proto=[(DELETE_REQUEST, f"message DeleteContactRequest {{ string id = 1; {field} }}")]
    )
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "DeleteContact: delete"),
            "nodes.store.write.rpcs.DeleteContact",
            f"contacts.DeleteContactRequest.command_id is {what}, but it holds the command id: make "
            "it a string field, or name another field with the top-level key command_id",
        )
    ]


def test_the_field_the_command_id_key_names_must_be_one_string(contracts, make_project):
    path = make_project(yaml=[("commands:", "command_id: ids\n\ncommands:")])
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "DeleteContacts: delete_many"),
            "nodes.store.write.rpcs.DeleteContacts",
            "contacts.DeleteContactsRequest.ids is repeated, but it holds the command id: make "
            "it a string field, or name another field with the top-level key command_id",
        )
    ]


def test_a_command_key_must_be_one_string(contracts, make_project):
    path = make_project(
        yaml=[("rpc: DeleteContact}", "rpc: DeleteContact, key: tags}")],
        proto=[
            (
                DELETE_REQUEST,
                "message DeleteContactRequest { string id = 1; "
                "string command_id = 15; repeated string tags = 2; }",
            )
        ],
    )
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "key: tags"),
            "commands.delete_contact.key",
            "'tags' is repeated; the entity key is one string field",
        )
    ]
