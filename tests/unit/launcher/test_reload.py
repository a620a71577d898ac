"""reload: which nodes a change of the topology, or of a file it uses, affects (topology pairs),
and what Reloader tells changed since the running version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cqrs_flow.errors import TopologyError
from cqrs_flow.launcher.reload import Reloader, affected_nodes, node_files, watched_files
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import Topology, load_topology, parse_topology

from ..helpers import ROOT, SHIPPED, apply_edits

TEXT = SHIPPED.read_text()
NODES = ["broker", "store", "reader", "writer", "gateway"]


def topology(*edits: tuple[str, str]) -> Topology:
    return parse_topology(apply_edits(TEXT, edits), SHIPPED)


def restarted(old: Topology, new: Topology, files: tuple[Path, ...] = ()) -> list[str]:
    return sorted(affected_nodes(old, new, files).restarted)


def test_the_same_topology_affects_nothing():
    affected = affected_nodes(topology(), topology())
    assert not affected
    assert (affected.added, affected.removed, dict(affected.restarted)) == ((), (), {})


@pytest.mark.parametrize(
    ("edit", "nodes"),
    [
        # the writer's own settings; nothing else reads them
        (("    delay: 3s\n", "    delay: 3s\n    attempts: 7\n"), ["writer"]),
        # the gateway's own settings
        (("    listen: 127.0.0.1:8080", "    listen: 127.0.0.1:8081"), ["gateway"]),
        (("      reversedName: ReverseName\n", ""), ["gateway"]),
        # the reader's plugins: the gateway calls it where it did
        (("    plugins: [plugins.contacts.ReverseName]", "    plugins: []"), ["reader"]),
        # a writer's delay also sets how long the gateway waits for its reports
        (("    delay: 3s", "    delay: 1s"), ["gateway", "writer"]),
    ],
)
def test_a_node_whose_own_settings_changed_restarts_alone(edit, nodes):
    assert restarted(topology(), topology(edit)) == nodes


def test_a_reader_in_its_gateways_process_restarts_with_it_and_it_with_the_reader():
    guest = ("    store: store.read\n", "    store: store.read\n    process: gateway\n")
    assert restarted(topology(guest), topology(guest, ("127.0.0.1:8080", "127.0.0.1:8081"))) == [
        "gateway",
        "reader",
    ]
    plugins = ("    plugins: [plugins.contacts.ReverseName]", "    plugins: []")
    affected = affected_nodes(topology(guest), topology(guest, plugins))
    assert affected.restarted["gateway"] == "shares a process with reader"
    # moved into the gateway's process, or out of it: both go
    assert restarted(topology(), topology(guest)) == ["gateway", "reader"]
    assert restarted(topology(guest), topology()) == ["gateway", "reader"]


def test_a_gateway_restarts_for_its_writers_delay_unless_it_sets_its_own_wait():
    slower = ("    delay: 3s", "    delay: 1s")
    affected = affected_nodes(topology(), topology(slower))
    assert affected.restarted["gateway"] == "its writers' delays or its store's list limit changed"
    own = ("    reader: reader\n", "    reader: reader\n    redeliver_after: 20s\n")
    assert restarted(topology(own), topology(own, slower)) == ["writer"]


def test_a_moved_dependency_restarts_the_nodes_that_call_it():
    new = topology(("      listen: 127.0.0.1:50052", "      listen: 127.0.0.1:50062"))
    affected = affected_nodes(topology(), new)
    # the store's read side moved: the reader calls it; the gateway calls the reader, which
    # did not move
    assert sorted(affected.restarted) == ["reader", "store"]
    assert affected.restarted["reader"] == "store's address or services changed"
    broker = topology(("    listen: 127.0.0.1:1883", "    listen: 127.0.0.1:1884"))
    assert restarted(topology(), broker) == ["broker", "gateway", "writer"]


def test_a_changed_command_restarts_its_writer_its_gateway_and_the_broker_that_checks_topics():
    new = topology(("{topic: CONTACT/ADD,", "{topic: CONTACT/CREATE,"))
    affected = affected_nodes(topology(), new)
    assert sorted(affected.restarted) == ["broker", "gateway", "writer"]
    assert affected.restarted["writer"] == "the commands it handles changed"
    assert affected.restarted["broker"] == "the nodes and clients it accepts changed"


def test_an_added_node_starts_and_the_nodes_it_calls_accept_it():
    second = (
        "  gateway:\n",
        "  audit:\n    kind: writer\n    broker: broker\n    store: store.write\n"
        "    commands: [add_contact]\n\n  gateway:\n",
    )
    affected = affected_nodes(topology(), topology(second))
    assert affected.added == ("audit",)
    # the broker takes its login, the store's write side its calls; the gateway waits for the
    # slower of two writers' reports (same delay: nothing to do), but its metrics port comes
    # after the new node's
    assert sorted(affected.restarted) == ["broker", "gateway", "store"]
    assert affected.restarted["gateway"] == "its metrics address changed"
    removed = affected_nodes(topology(second), topology())
    assert removed.removed == ("audit",) and removed.added == ()
    assert affected.restarted["store"] == "the nodes and clients it accepts changed"
    assert affected.to_stop == {"broker", "gateway", "store"}
    assert affected.to_start == {"audit", "broker", "gateway", "store"}


def test_a_removed_caller_changes_who_its_store_accepts():
    without_reader_plugins = topology(("    plugins: [plugins.contacts.ReverseName]", ""))
    assert restarted(topology(), without_reader_plugins) == ["reader"]
    projection = (
        "  gateway:\n",
        "  counts:\n    kind: projection\n    follows: reader\n    store: store.write\n"
        "    entity: Contact\n    plugin: plugins.contacts.ReverseName\n\n  gateway:\n",
    )
    try:
        with_projection = topology(projection)
    except TopologyError:
        pytest.skip("the shipped topology cannot take this projection")
    affected = affected_nodes(with_projection, topology())
    assert affected.removed == ("counts",)
    assert "reader" in affected.restarted  # it no longer lets the projection follow its log


def test_settings_every_node_reads_restart_every_node():
    new = topology(("name: contacts", "name: people"))
    assert restarted(topology(), new) == sorted(NODES)


def test_the_launchers_own_timeouts_restart_nothing():
    new = topology(("name: contacts\n", "name: contacts\nstop_timeout: 20s\nready_timeout: 9s\n"))
    assert not affected_nodes(topology(), new)


def test_a_changed_file_restarts_the_nodes_that_use_it():
    old = topology()
    schema = (ROOT / "schema" / "contacts.graphql").resolve()
    plugin = (ROOT / "plugins" / "contacts.py").resolve()
    proto = (ROOT / "proto" / "contacts.proto").resolve()
    assert restarted(old, old, (schema,)) == ["gateway"]
    # the reader's ReverseName and the gateway's NameRules live there
    assert restarted(old, old, (plugin,)) == ["gateway", "reader"]
    assert restarted(old, old, ((ROOT / "plugins" / "audit.py").resolve(),)) == []
    # every node but the broker reads the protos
    assert restarted(old, old, (proto,)) == ["gateway", "reader", "store", "writer"]
    assert affected_nodes(old, old, (schema,)).restarted["gateway"] == (
        "it uses schema/contacts.graphql"
    )


def test_protos_are_mapped_to_the_nodes_whose_services_and_messages_they_define(tmp_path):
    """Two proto files: the reader's service in one of its own; the store's in the other."""
    for part in ("proto", "schema", "plugins"):
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / "proto" / "extra.proto").write_text(
        'syntax = "proto3";\npackage extra;\nmessage Unused { string a = 1; }\n'
    )
    text = TEXT.replace(
        "proto: proto/contacts.proto", "proto: [proto/contacts.proto, proto/extra.proto]"
    )
    (tmp_path / "topology.yaml").write_text(text)
    loaded = load_topology(tmp_path / "topology.yaml")
    protos = compile_protos(list(loaded.protos), loaded.root, tmp_path / "cache")
    extra = (tmp_path / "proto" / "extra.proto").resolve()
    contacts = (tmp_path / "proto" / "contacts.proto").resolve()
    assert extra in watched_files(loaded, protos)
    assert contacts in node_files(loaded, "writer", protos)
    assert extra not in node_files(loaded, "writer", protos)
    assert sorted(affected_nodes(loaded, loaded, (extra,), protos).restarted) == []
    assert sorted(affected_nodes(loaded, loaded, (contacts,), protos).restarted) == [
        "gateway",
        "reader",
        "store",
        "writer",
    ]
    # without the compiled protos, any proto counts as used by every node reading protos
    assert sorted(affected_nodes(loaded, loaded, (extra,)).restarted) == [
        "gateway",
        "reader",
        "store",
        "writer",
    ]


def test_the_reloader_tells_what_changed_by_content(tmp_path):
    for part in ("proto", "schema", "plugins"):
        shutil.copytree(ROOT / part, tmp_path / part)
    file = tmp_path / "topology.yaml"
    file.write_text(TEXT)

    def load():
        return load_topology(file), None

    reloader = Reloader(load, *load())
    schema = tmp_path / "schema" / "contacts.graphql"
    schema.write_text(schema.read_text())  # saved unchanged
    unchanged = reloader.next()
    assert not unchanged.changed and not unchanged.affected
    schema.write_text(schema.read_text() + "\n# a comment\n")
    file.write_text(TEXT.replace("    delay: 3s\n", "    delay: 3s\n    attempts: 4\n"))
    step = reloader.next()
    assert step.changed == {file.resolve(), schema.resolve()}
    assert sorted(step.affected.restarted) == ["gateway", "writer"]
    reloader.accept(step)
    assert not reloader.next().affected
    file.write_text(TEXT.replace("kind: writer", "kind: writter"))
    with pytest.raises(TopologyError, match="did you mean 'writer'"):
        reloader.next()
    assert reloader.topology is step.topology  # still the running version
