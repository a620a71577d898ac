"""Plugins hooked into the reader, the gateway and the writer of a running system."""

from __future__ import annotations

import json
import subprocess

import pytest
from system import TOPOLOGIES, System, cli, prepare, wait_until


def add(system, name: str) -> dict:
    fields = "status message id command_id code"
    return system.data(f"mutation {{ addContact(name: {json.dumps(name)}) {{ {fields} }} }}")[
        "addContact"
    ]


def test_reader_plugin_answers_its_rpc_through_graphql(contacts):
    contact_id = add(contacts, "Ada Lovelace")["id"]
    query = f'{{ reversedName(id: "{contact_id}") }}'
    assert wait_until(lambda: contacts.data(query)["reversedName"]) == "ecalevoL adA"
    assert contacts.data('{ reversedName(id: "no-such-id") }') == {"reversedName": None}


@pytest.mark.parametrize(
    "name, message",
    [
        ("   ", "name must not be empty"),
        ("x" * 21, "name is 21 characters long; at most 20 are allowed"),
    ],
)
def test_gateway_plugin_rejects_a_command_before_it_is_published(contacts, name, message):
    answer = add(contacts, name)
    assert answer["status"] == "ERROR" and answer["message"] == message
    assert answer["id"] is None and answer["command_id"] is None  # nothing looks created
    assert answer["code"] == "REJECTED"


def test_gateway_plugin_enriches_the_command_and_the_writer_plugin_sees_it(contacts):
    contact_id = add(contacts, "  Grace  ")["id"]
    query = f'{{ contact(id: "{contact_id}") {{ name }} }}'
    assert wait_until(lambda: contacts.data(query)["contact"]) == {"name": "Grace"}
    line = contacts.wait_for_line(rf"writer .*command add_contact: .*{contact_id}")
    assert '"name": "Grace"' in line


def test_failing_plugins_are_named_and_leak_nothing(tmp_path):
    system = System(prepare("faulty_plugins.yaml", tmp_path)).start()
    try:
        answer = add(system, "boom")
        assert answer["status"] == "ERROR"
        assert "plugin 'faulty.RaisingGateway' failed; nothing was queued" in answer["message"]
        assert "internal detail" not in answer["message"]
        assert add(system, "fine")["status"] == "OK"

        result = system.graphql('{ reversedName(id: "x") }')
        assert result["data"] == {"reversedName": None}
        message = result["errors"][0]["message"]
        assert "internal error" in message and "internal detail" not in message
        system.wait_for_line(r"reader .*plugin 'faulty.RaisingReader' failed on ReverseName")
        system.wait_for_line(r"gateway .*plugin 'faulty.RaisingGateway' failed on addContact")
    finally:
        system.stop()


def test_a_plugin_that_cannot_be_imported_is_named_and_nothing_starts(tmp_path):
    broken = prepare("broken.yaml", tmp_path, source=TOPOLOGIES / "contacts_fast.yaml")
    text = broken.read_text()
    broken.write_text(text.replace("plugins.contacts.ReverseName", "plugins.contacts.NoSuchPlugin"))
    proc = subprocess.run([*cli(), "up", str(broken)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert (
        "nodes.reader.plugins[0]: plugin 'plugins.contacts.NoSuchPlugin': module plugins.contacts "
        "has no 'NoSuchPlugin'" in proc.stderr
    )
    assert "starting" not in proc.stdout
