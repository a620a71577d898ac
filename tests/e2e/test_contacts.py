"""The README's seed operations against a real `cqrs-flow up`: add, update, delete, with the
write delay between a mutation's answer and its effect."""

from __future__ import annotations

import re
import time
from datetime import datetime

from system import wait_until

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
LIST = "query ListContacts { listContacts(count: 10) { id name last_updated } }"


def find(system, contact_id):
    return next((c for c in system.data(LIST)["listContacts"] if c["id"] == contact_id), None)


def test_seed_operations_add_update_delete(contacts):
    added = contacts.data(
        'mutation AddContact { addContact(name: "John HUEBR") { status message id } }'
    )
    answer = added["addContact"]
    assert answer["status"] == "OK" and answer["message"] == "Queued to add"
    contact_id = answer["id"]
    queued_at = time.monotonic()

    assert find(contacts, contact_id) is None, "the mutation must not write the store directly"
    contact = wait_until(lambda: find(contacts, contact_id))
    assert time.monotonic() - queued_at >= 0.4, "applied before the 0.5 s write delay"
    assert contact["name"] == "John HUEBR"
    assert RFC3339.match(contact["last_updated"]), contact
    first_update = contact["last_updated"]

    updated = contacts.data(
        f'mutation UpdateContact {{ updateContact(id: "{contact_id}", name: "John HUEBR (2)") '
        "{ status message } }"
    )
    assert updated["updateContact"] == {"status": "OK", "message": "Queued to update"}
    changed = wait_until(
        lambda: (c := find(contacts, contact_id)) and c["name"] == "John HUEBR (2)" and c
    )
    assert datetime.fromisoformat(
        changed["last_updated"].replace("Z", "+00:00")
    ) > datetime.fromisoformat(first_update.replace("Z", "+00:00"))

    deleted = contacts.data(
        f'mutation DeleteContact {{ deleteContact(id: "{contact_id}") {{ status message }} }}'
    )
    assert deleted["deleteContact"] == {"status": "OK", "message": "Queued to delete"}
    wait_until(lambda: find(contacts, contact_id) is None)


def test_contact_and_get_contact_answer_synchronously(contacts):
    contact_id = contacts.data('mutation { addContact(name: "Ada") { id } }')["addContact"]["id"]
    query = "query($id: String!) { contact(id: $id) { id name } getContact(id: $id) { name } }"
    assert contacts.data(query, {"id": contact_id}) == {"contact": None, "getContact": None}
    found = wait_until(lambda: contacts.data(query, {"id": contact_id})["contact"])
    assert found == {"id": contact_id, "name": "Ada"}
    assert contacts.data(query, {"id": contact_id})["getContact"] == {"name": "Ada"}


def test_update_and_delete_of_an_unknown_id_answer_error(contacts):
    for mutation in (
        'updateContact(id: "no-such-id", name: "x")',
        'deleteContact(id: "no-such-id")',
    ):
        answer = contacts.data(f"mutation {{ {mutation} {{ status message }} }}")
        assert next(iter(answer.values())) == {
            "status": "ERROR",
            "message": "contact no-such-id not found",
        }


def test_list_contacts_honours_count(contacts):
    ids = [
        contacts.data(f'mutation {{ addContact(name: "n{i}") {{ id }} }}')["addContact"]["id"]
        for i in range(4)
    ]
    wait_until(lambda: all(find(contacts, i) for i in ids))
    assert len(contacts.data("{ listContacts(count: 2) { id } }")["listContacts"]) == 2
    assert contacts.data("{ listContacts(count: 0) { id } }")["listContacts"] == []


def test_commands_on_one_contact_apply_in_order(contacts):
    contact_id = contacts.data('mutation { addContact(name: "v0") { id } }')["addContact"]["id"]
    wait_until(lambda: find(contacts, contact_id))
    for i in range(1, 6):
        answer = contacts.data(
            f'mutation {{ updateContact(id: "{contact_id}", name: "v{i}") {{ status }} }}'
        )
        assert answer["updateContact"]["status"] == "OK"
    assert wait_until(lambda: (c := find(contacts, contact_id)) and c["name"] == "v5" and c)
    time.sleep(0.7)  # a reordered earlier update would land after the last one
    assert find(contacts, contact_id)["name"] == "v5"
