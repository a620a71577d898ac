"""operations: RPC messages bound to store operations, run against a real MemoryStore."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cqrs_flow.contracts.operations import ShapeError, bind
from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.contracts.store import store_plan
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.stores import DuplicateKey, MemoryStore, NotFound
from cqrs_flow.stores.operations import InvalidRequest, Stale, apply_operation
from cqrs_flow.topology.problems import Problems

NOW = "2024-05-06T07:08:09.010Z"


def fake_clock() -> str:
    return NOW


@pytest.fixture
def ops(shipped, shipped_protos):
    """RPC name -> bound operation, for both services of the shipped store."""
    report = Problems(shipped.located)
    plan = store_plan(shipped, shipped.nodes["store"], shipped_protos, report)
    assert report.problems == []
    return {rpc: bound for service in plan.values() for rpc, bound in service.items()}


@pytest.fixture
def contacts(shipped_protos):
    """Message class by short name, e.g. contacts('Contact')."""
    return lambda name: shipped_protos.message_class(f"contacts.{name}")


@pytest.fixture
def call(ops, contacts, shipped_protos):
    """call(store, 'AddContact', request, timestamp=..., list_limit=...) -> response."""

    def run(store, rpc, request, timestamp="last_updated", list_limit=1000, command=None):
        bound = ops[rpc]
        response_class = shipped_protos.class_of(bound.method.output_type)
        return asyncio.run(
            apply_operation(
                bound,
                request,
                store,
                contacts("Contact"),
                response_class,
                timestamp,
                list_limit,
                clock=fake_clock,
                command=command,
            )
        )

    return run


@pytest.fixture
def store():
    return MemoryStore(f"contacts-{uuid.uuid4()}")


def stored(store, key):
    return asyncio.run(store.get(key))


def add(call, contacts, store, **fields):
    return call(
        store, "AddContact", contacts("AddContactRequest")(contact=contacts("Contact")(**fields))
    )


# -- binding ----------------------------------------------------------------------------------


def test_store_plan_binds_every_rpc_of_the_shipped_store(ops):
    shape = {rpc: (b.op, b.side, b.request_field, b.response_field) for rpc, b in ops.items()}
    assert shape == {
        "AddContact": ("insert", "write", "contact", None),
        "UpdateContact": ("update", "write", "contact", None),
        "DeleteContact": ("delete", "write", "id", None),
        "AddContacts": ("insert_many", "write", "contacts", None),
        "DeleteContacts": ("delete_many", "write", "ids", None),
        "GetContact": ("get", "read", "id", "contact"),
        "ListContacts": ("list", "read", "count", "contacts"),
    }


@pytest.mark.parametrize(
    "op, rpc, message",
    [
        (
            "list",
            "GetContact",
            "GetContact (list) needs exactly one integer (count) field in "
            "contacts.GetContactRequest; found none",
        ),
        (
            "insert",
            "DeleteContact",
            "DeleteContact (insert) needs exactly one contacts.Contact field in "
            "contacts.DeleteContactRequest; found none",
        ),
        (
            "insert_many",
            "AddContact",
            "AddContact (insert_many) needs exactly one repeated contacts.Contact field in "
            "contacts.AddContactRequest; "
            "found none",
        ),
        (
            "get",
            "ListContacts",
            "ListContacts (get) needs a string field 'id' in contacts.ListContactsRequest",
        ),
        (
            "delete",
            "AddContacts",
            "AddContacts (delete) needs a string field 'id' in contacts.AddContactsRequest",
        ),
        (
            "delete_many",
            "DeleteContact",
            "DeleteContact (delete_many) needs exactly one repeated string field in "
            "contacts.DeleteContactRequest; "
            "found none",
        ),
        ("get", "GetContact", None),
    ],
)
def test_bind_checks_the_shape_of_the_messages(shipped_protos, op, rpc, message):
    service = (
        "contacts.ContactReadService"
        if rpc in ("GetContact", "ListContacts")
        else "contacts.ContactWriteService"
    )
    method = shipped_protos.method(service, rpc)
    document = shipped_protos.message_descriptor("contacts.Contact")
    if message is None:
        assert bind(op, method, document, "id").op == op
    else:
        with pytest.raises(ShapeError) as exc:
            bind(op, method, document, "id")
        assert str(exc.value) == message


def test_bind_needs_a_string_key_in_the_document(shipped_protos):
    method = shipped_protos.method("contacts.ContactWriteService", "AddContact")
    document = shipped_protos.message_descriptor("contacts.Contact")
    with pytest.raises(
        ShapeError, match=r"the document contacts\.Contact needs a string key field 'email'"
    ):
        bind("insert", method, document, "email")


def test_bind_refuses_an_unknown_operation(shipped_protos):
    method = shipped_protos.method("contacts.ContactWriteService", "AddContact")
    with pytest.raises(ShapeError, match="unknown store operation 'upsert'"):
        bind("upsert", method, shipped_protos.message_descriptor("contacts.Contact"), "id")


# -- insert -----------------------------------------------------------------------------------


def test_insert_generates_a_key_and_sets_the_timestamp(call, contacts, store):
    response = add(call, contacts, store, name="Ann")
    assert uuid.UUID(response.id)
    assert response.count == 1
    assert stored(store, response.id) == {"id": response.id, "name": "Ann", "last_updated": NOW}


def test_insert_keeps_a_given_key(call, contacts, store):
    response = add(call, contacts, store, id="c1", name="Ann", last_updated="long ago")
    assert response.id == "c1"
    assert stored(store, "c1")["last_updated"] == NOW


def test_insert_without_a_timestamp_field(call, contacts, store):
    request = contacts("AddContactRequest")(contact=contacts("Contact")(id="c1", name="Ann"))
    call(store, "AddContact", request, timestamp=None)
    assert stored(store, "c1")["last_updated"] == ""


def test_insert_of_a_taken_key_is_a_duplicate(call, contacts, store):
    add(call, contacts, store, id="c1", name="Ann")
    with pytest.raises(DuplicateKey):
        add(call, contacts, store, id="c1", name="Bob")
    assert stored(store, "c1")["name"] == "Ann"


# -- update -----------------------------------------------------------------------------------


def test_update_sets_fields_and_the_timestamp(call, contacts, store):
    add(call, contacts, store, id="c1", name="Ann")
    request = contacts("UpdateContactRequest")(contact=contacts("Contact")(id="c1", name="Bea"))
    response = call(store, "UpdateContact", request)
    assert (response.id, response.count) == ("c1", 1)
    assert stored(store, "c1") == {"id": "c1", "name": "Bea", "last_updated": NOW}


def test_update_of_a_missing_document_is_not_found(call, contacts, store):
    request = contacts("UpdateContactRequest")(contact=contacts("Contact")(id="nobody", name="Bea"))
    with pytest.raises(NotFound):
        call(store, "UpdateContact", request)
    with pytest.raises(NotFound):
        stored(store, "nobody")  # and nothing was created


def test_update_without_a_key_is_invalid(call, contacts, store):
    request = contacts("UpdateContactRequest")(contact=contacts("Contact")(name="Bea"))
    with pytest.raises(InvalidRequest, match=r"UpdateContact needs 'contact\.id'"):
        call(store, "UpdateContact", request)


PEOPLE_PROTO = """\
syntax = "proto3";
package people;

message Address { string city = 1; }
message Person {
  string id = 1;
  string name = 2;
  optional string email = 3;
  Address address = 4;
  int32 age = 5;
}
message PersonRequest { Person person = 1; }
message PersonKey { string id = 1; }
message Done { string id = 1; int32 count = 2; }
message Filter { string text = 1; }
message People { repeated Person people = 1; }

service PeopleService {
  rpc Add(PersonRequest) returns (Done);
  rpc Update(PersonRequest) returns (Done);
  rpc Get(PersonKey) returns (Person);
  rpc Search(Filter) returns (People);
}
"""


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    root = tmp_path_factory.mktemp("people")
    (root / "people.proto").write_text(PEOPLE_PROTO)
    return compile_protos([root / "people.proto"], root, cache=root / "cache")


def run_people(people, op, rpc, request, store):
    method = people.method("people.PeopleService", rpc)
    bound = bind(op, method, people.message_descriptor("people.Person"), "id")
    return asyncio.run(
        apply_operation(
            bound,
            request,
            store,
            people.message_class("people.Person"),
            people.class_of(method.output_type),
            None,
            1000,
            clock=fake_clock,
        )
    )


def test_update_keeps_the_fields_with_presence_it_does_not_set(people, store):
    person, address = people.message_class("people.Person"), people.message_class("people.Address")
    request = people.message_class("people.PersonRequest")
    run_people(
        people,
        "insert",
        "Add",
        request(
            person=person(
                id="p1", name="Ann", email="ann@example.org", address=address(city="Oslo"), age=30
            )
        ),
        store,
    )
    run_people(people, "update", "Update", request(person=person(id="p1", name="Bea")), store)
    after = stored(store, "p1")
    assert after["name"] == "Bea"
    assert after["email"] == "ann@example.org"  # proto3 optional, not set: kept
    assert after["address"] == {"city": "Oslo"}  # message field, not set: kept
    assert after["age"] == 0  # no presence: an update always sets it (documented in to_update)

    run_people(people, "update", "Update", request(person=person(id="p1", email="")), store)
    assert stored(store, "p1")["email"] == ""  # set explicitly, even to the default: written


def test_get_can_answer_with_the_document_itself(people, store):
    person = people.message_class("people.Person")
    run_people(
        people,
        "insert",
        "Add",
        people.message_class("people.PersonRequest")(person=person(id="p1", name="Ann")),
        store,
    )
    found = run_people(
        people, "get", "Get", people.message_class("people.PersonKey")(id="p1"), store
    )
    assert isinstance(found, person)
    assert (found.id, found.name) == ("p1", "Ann")


def test_list_needs_an_integer_field(people):
    method = people.method("people.PeopleService", "Search")
    with pytest.raises(
        ShapeError,
        match=r"Search \(list\) needs exactly one integer \(count\) field in "
        r"people.Filter; found none",
    ):
        bind("list", method, people.message_descriptor("people.Person"), "id")


# -- delete -----------------------------------------------------------------------------------


def test_delete(call, contacts, store):
    add(call, contacts, store, id="c1", name="Ann")
    response = call(store, "DeleteContact", contacts("DeleteContactRequest")(id="c1"))
    assert (response.id, response.count) == ("c1", 1)
    with pytest.raises(NotFound):
        stored(store, "c1")


def test_delete_of_a_missing_document_is_not_found(call, contacts, store):
    with pytest.raises(NotFound):
        call(store, "DeleteContact", contacts("DeleteContactRequest")(id="nobody"))


def test_delete_without_a_key_is_invalid(call, contacts, store):
    with pytest.raises(InvalidRequest, match="DeleteContact needs 'id'"):
        call(store, "DeleteContact", contacts("DeleteContactRequest")())


# -- many -------------------------------------------------------------------------------------


def add_many(call, contacts, store, *people):
    request = contacts("AddContactsRequest")(contacts=[contacts("Contact")(**p) for p in people])
    return call(store, "AddContacts", request)


def test_insert_many_counts_and_stamps(call, contacts, store):
    response = add_many(
        call, contacts, store, {"id": "a", "name": "A"}, {"name": "B"}, {"id": "c", "name": "C"}
    )
    assert response.count == 3
    assert response.id == ""  # no single key to report
    everyone = asyncio.run(store.list(10))
    assert sorted(d["name"] for d in everyone) == ["A", "B", "C"]
    assert {d["last_updated"] for d in everyone} == {NOW}
    assert all(d["id"] for d in everyone)


def test_insert_many_stores_none_when_a_key_is_taken(call, contacts, store):
    add(call, contacts, store, id="b", name="old")
    with pytest.raises(DuplicateKey):
        add_many(call, contacts, store, {"id": "a", "name": "A"}, {"id": "b", "name": "B"})
    assert [d["id"] for d in asyncio.run(store.list(10))] == ["b"]


def test_insert_many_with_a_key_twice_in_the_request(call, contacts, store):
    # Regression: one of the two used to be dropped silently, with count 1.
    with pytest.raises(DuplicateKey):
        add_many(call, contacts, store, {"id": "a", "name": "first"}, {"id": "a", "name": "second"})
    assert asyncio.run(store.list(10)) == []


def test_delete_many_counts_only_what_existed(call, contacts, store):
    add_many(call, contacts, store, {"id": "a"}, {"id": "b"}, {"id": "c"})
    response = call(
        store, "DeleteContacts", contacts("DeleteContactsRequest")(ids=["a", "c", "zz"])
    )
    assert response.count == 2
    assert [d["id"] for d in asyncio.run(store.list(10))] == ["b"]


# -- get and list -----------------------------------------------------------------------------


def test_get(call, contacts, store):
    add(call, contacts, store, id="c1", name="Ann")
    response = call(store, "GetContact", contacts("GetContactRequest")(id="c1"))
    assert isinstance(response, contacts("GetContactResponse"))
    assert (response.contact.id, response.contact.name, response.contact.last_updated) == (
        "c1",
        "Ann",
        NOW,
    )


def test_get_of_a_missing_document_is_not_found(call, contacts, store):
    with pytest.raises(NotFound):
        call(store, "GetContact", contacts("GetContactRequest")(id="nobody"))


def test_get_without_a_key_is_invalid(call, contacts, store):
    with pytest.raises(InvalidRequest, match="GetContact needs 'id'"):
        call(store, "GetContact", contacts("GetContactRequest")())


@pytest.mark.parametrize(
    "count, limit, expected", [(3, 1000, 3), (10, 1000, 5), (10, 4, 4), (3, 2, 2), (0, 1000, 0)]
)
def test_list_respects_count_and_list_limit(call, contacts, store, count, limit, expected):
    add_many(call, contacts, store, *({"id": f"c{i}", "name": f"n{i}"} for i in range(5)))
    response = call(
        store, "ListContacts", contacts("ListContactsRequest")(count=count), list_limit=limit
    )
    assert [c.id for c in response.contacts] == [f"c{i}" for i in range(expected)]  # oldest first


def test_list_with_a_negative_count_is_invalid(call, contacts, store):
    with pytest.raises(InvalidRequest, match="count must not be negative"):
        call(store, "ListContacts", contacts("ListContactsRequest")(count=-1))


# -- commands apply once, and in order per key --------------------------------------------------


def test_a_command_delivered_again_is_not_applied_again(call, contacts, store):
    command = CommandClock().next_id()
    request = contacts("AddContactRequest")(contact=contacts("Contact")(id="c1", name="Ann"))
    call(store, "AddContact", request, command=command)
    with pytest.raises(Stale) as stale:  # not DuplicateKey: the insert is done, not refused
        call(store, "AddContact", request, command=command)
    assert (stale.value.key, stale.value.last) == ("c1", command)
    assert (stale.value.response.id, stale.value.response.count) == ("c1", 0)


def test_an_older_command_does_not_undo_a_newer_one(call, contacts, store):
    clock = CommandClock()
    add_id, older, newer = clock.next_id(), clock.next_id(), clock.next_id()
    call(
        store,
        "AddContact",
        contacts("AddContactRequest")(contact=contacts("Contact")(id="c1", name="Ann")),
        command=add_id,
    )

    def update(name):
        return contacts("UpdateContactRequest")(contact=contacts("Contact")(id="c1", name=name))

    call(store, "UpdateContact", update("Newer"), command=newer)
    with pytest.raises(Stale):
        call(store, "UpdateContact", update("Older"), command=older)
    assert stored(store, "c1")["name"] == "Newer"


def test_a_delete_leaves_a_tombstone_that_an_older_insert_respects(call, contacts, store):
    clock = CommandClock()
    insert_id, delete_id = clock.next_id(), clock.next_id()
    request = contacts("AddContactRequest")(contact=contacts("Contact")(id="c1", name="Ann"))
    call(store, "AddContact", request, command=insert_id)
    call(store, "DeleteContact", contacts("DeleteContactRequest")(id="c1"), command=delete_id)
    with pytest.raises(Stale):  # the insert delivered again after the delete: stays deleted
        call(store, "AddContact", request, command=insert_id)
    with pytest.raises(NotFound):
        stored(store, "c1")
    call(store, "AddContact", request, command=clock.next_id())  # a newer insert brings it back
    assert stored(store, "c1")["name"] == "Ann"


def test_bulk_commands_leave_out_the_keys_they_must_not_touch(call, contacts, store):
    clock = CommandClock()
    old, new = clock.next_id(), clock.next_id()
    add(call, contacts, store, id="plain", name="no command")
    call(
        store,
        "AddContact",
        contacts("AddContactRequest")(contact=contacts("Contact")(id="c1", name="Ann")),
        command=new,
    )
    response = call(
        store, "DeleteContacts", contacts("DeleteContactsRequest")(ids=["c1", "plain"]), command=old
    )
    assert response.count == 1  # c1 holds a newer command; the one written without a command goes
    assert stored(store, "c1")["name"] == "Ann"
    with pytest.raises(NotFound):
        stored(store, "plain")


def test_commands_with_ids_of_their_own_apply_once_each(call, contacts, store):
    add(call, contacts, store, id="c1", name="Ann")

    def update(name):
        return contacts("UpdateContactRequest")(contact=contacts("Contact")(id="c1", name=name))

    call(store, "UpdateContact", update("B"), command="client-b")
    call(store, "UpdateContact", update("A"), command="client-a")  # no order known: applies
    with pytest.raises(Stale):
        call(store, "UpdateContact", update("A"), command="client-a")
    assert stored(store, "c1")["name"] == "A"
