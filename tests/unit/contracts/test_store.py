"""The store's contract: RPCs bound to operations, the document, the services, the command id."""

from __future__ import annotations

import pytest

from cqrs_flow.errors import Problem

from ..helpers import line_of
from .support import DELETE_REQUEST, at, text_of


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
            "service 'contacts.ContactReadService' has no RPC 'GetContact'; did you mean "
            "'FetchContact'?",
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
        "'get' is a read operation; the write service may only delete, delete_many, insert, "
        "insert_many, update"
    ]


def test_operation_that_does_not_fit_the_rpc(contracts, make_project):
    path = make_project(yaml=[("ListContacts: list", "ListContacts: get")])
    assert at(contracts(path), "nodes.store.read.rpcs.ListContacts") == [
        "ListContacts (get) needs a string field 'id' in contacts.ListContactsRequest"
    ]


def test_document_type_that_does_not_exist(contracts, make_project):
    path = make_project(
        yaml=[
            ("document: contacts.Contact", "document: contacts.Contakt"),
            ("{changed: Contact}", "{changed: Contakt}"),  # the entity is named after it
        ]
    )
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
            f"contacts.DeleteContactRequest.command_id is {what}, but it holds the command id: "
            "make "
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
