"""checks: wiring problems found on the whole model (references, segregation, commands, ports,
cycles, files), each with key path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.checks import check_wiring
from cqrs_flow.topology.model import (
    Address,
    BrokerNode,
    Command,
    Endpoint,
    Entity,
    GatewayNode,
    Mutation,
    ReaderNode,
    StoreNode,
    Topology,
    WriterNode,
    frozen_map,
)
from cqrs_flow.topology.paths import project_directory

from ..helpers import line_of


def at(problems: list[Problem], path: str) -> list[str]:
    return [p.message for p in problems if p.path == path]


def test_shipped_topology_has_no_wiring_problems(shipped):
    assert check_wiring(shipped) == []


# -- references -------------------------------------------------------------------------------


def test_writer_broker_naming_a_missing_node(edit, problems_of):
    text = edit(
        ("    broker: broker\n    store: store.write", "    broker: brokr\n    store: store.write")
    )
    assert problems_of(text) == [
        Problem(
            line_of(text, "broker: brokr"),
            "nodes.writer.broker",
            "no node named 'brokr'; did you mean 'broker'?",
        )
    ]


def test_missing_node_without_a_close_name(edit, problems_of):
    problems = problems_of(edit(("    reader: reader\n", "    reader: zzz\n")))
    assert at(problems, "nodes.gateway.reader") == ["no node named 'zzz'"]


def test_writer_wired_to_the_read_side_is_rejected(edit, problems_of):
    text = edit(("store: store.write", "store: store.read"))
    assert problems_of(text) == [
        Problem(
            line_of(text, "store: store.read", occurrence=2),
            "nodes.writer.store",
            "a writer may use only a store's write service, not 'store.read' (read/write "
            "segregation); "
            "use 'store.write'",
        )
    ]


def test_reader_wired_to_the_write_side_is_rejected(edit, problems_of):
    text = edit(("store: store.read", "store: store.write"))
    assert problems_of(text) == [
        Problem(
            line_of(text, "store: store.write"),
            "nodes.reader.store",
            "a reader may use only a store's read service, not 'store.write' (read/write "
            "segregation); "
            "use 'store.read'",
        )
    ]


def test_store_reference_to_a_node_of_another_kind(edit, problems_of):
    problems = problems_of(edit(("store: store.write", "store: broker.write")))
    assert at(problems, "nodes.writer.store") == [
        "'broker' is a broker node; expected a store node"
    ]


@pytest.mark.parametrize(
    "target, kind", [("writer", "writer"), ("store", "store"), ("broker", "broker")]
)
def test_gateway_reader_must_be_a_reader(edit, problems_of, target, kind):
    text = edit(("    reader: reader\n", f"    reader: {target}\n"))
    problems = problems_of(text)
    assert at(problems, "nodes.gateway.reader") == [
        f"'{target}' is a {kind} node; expected a reader node"
    ]
    assert [p.line for p in problems if p.path == "nodes.gateway.reader"] == [
        line_of(text, f"reader: {target}")
    ]


def test_gateway_broker_must_be_a_broker(edit, problems_of):
    problems = problems_of(
        edit(("    broker: broker\n    reader: reader", "    broker: store\n    reader: reader"))
    )
    assert at(problems, "nodes.gateway.broker") == [
        "'store' is a store node; expected a broker node"
    ]


def test_store_read_and_write_services_must_differ(edit, problems_of):
    problems = problems_of(
        edit(("service: contacts.ContactReadService", "service: contacts.ContactWriteService"))
    )
    assert at(problems, "nodes.store.read.service") == [
        "the read and write services must be different gRPC services"
    ]


# -- listeners --------------------------------------------------------------------------------


def test_same_port_twice(edit, problems_of):
    text = edit(("listen: 127.0.0.1:50053", "listen: 127.0.0.1:50052"))
    assert problems_of(text) == [
        Problem(
            line_of(text, "listen: 127.0.0.1:50052", occurrence=2),
            "nodes.reader.listen",
            "port 50052 is already taken by nodes.store (read service, 127.0.0.1:50052)",
        )
    ]


def test_wildcard_and_loopback_on_the_same_port_clash(edit, problems_of):
    problems = problems_of(edit(("listen: 127.0.0.1:50053", "listen: 0.0.0.0:50051")))
    assert at(problems, "nodes.reader.listen") == [
        "port 50051 is already taken by nodes.store (write service, 127.0.0.1:50051)"
    ]


def test_ipv6_wildcard_clashes_too(edit, problems_of):
    problems = problems_of(edit(("listen: 127.0.0.1:8080", "listen: '[::]:1883'")))
    assert at(problems, "nodes.gateway.listen") == [
        "port 1883 is already taken by nodes.broker (mqtt, 127.0.0.1:1883)"
    ]


def test_a_store_clashing_with_itself(edit, problems_of):
    problems = problems_of(edit(("listen: 127.0.0.1:50052", "listen: 127.0.0.1:50051")))
    assert at(problems, "nodes.store.read.listen") == [
        "port 50051 is already taken by nodes.store (write service, 127.0.0.1:50051)"
    ]


def test_default_listen_addresses_clash_with_explicit_ones(edit, problems_of):
    # The broker's default is 127.0.0.1:1883; the gateway asks for the same port.
    problems = problems_of(
        edit(
            ("    kind: broker\n    listen: 127.0.0.1:1883\n", "    kind: broker\n"),
            ("listen: 127.0.0.1:8080", "listen: 1883"),
        )
    )
    assert at(problems, "nodes.gateway.listen") == [
        "port 1883 is already taken by nodes.broker (mqtt, 127.0.0.1:1883)"
    ]


@pytest.mark.parametrize("address", ["127.0.0.2:50051", "'[::1]:50051'", "127.0.0.1:50054"])
def test_same_port_on_distinct_addresses_is_fine(edit, parse, address):
    parse(edit(("listen: 127.0.0.1:50053", f"listen: {address}")))


def test_localhost_and_loopback_on_the_same_port_clash(edit, problems_of):
    # Regression: hosts used to be compared as strings, so this clash went unnoticed.
    problems = problems_of(edit(("listen: 127.0.0.1:50053", "listen: localhost:50051")))
    assert at(problems, "nodes.reader.listen") == [
        "port 50051 is already taken by nodes.store (write service, 127.0.0.1:50051)"
    ]


# -- cycles -----------------------------------------------------------------------------------


def test_cycle_through_yaml_two_gateways(edit, problems_of):
    extra = (
        "  gw2: {kind: gateway, listen: 8081, schema: schema/contacts.graphql, broker: broker, "
        "reader: gw3}\n"
        "  gw3: {kind: gateway, listen: 8082, schema: schema/contacts.graphql, broker: broker, "
        "reader: gw2}\n"
    )
    text = edit(("nodes:\n", "nodes:\n" + extra))
    problems = problems_of(text)
    assert at(problems, "nodes.gw2") == ["dependency cycle: gw2 -> gw3 -> gw2"]
    assert [p.line for p in problems if p.path == "nodes.gw2"] == [line_of(text, "gw2:")]
    # The wrong-kind references are reported as well: every problem at once.
    assert at(problems, "nodes.gw2.reader") == ["'gw3' is a gateway node; expected a reader node"]


def test_self_cycle_through_yaml(edit, problems_of):
    problems = problems_of(
        edit(
            (
                "    broker: broker\n    store: store.write",
                "    broker: writer\n    store: store.write",
            )
        )
    )
    assert at(problems, "nodes.writer") == ["dependency cycle: writer -> writer"]


def test_cycle_in_a_hand_built_topology():
    nodes = {
        "r1": ReaderNode("r1", listen=Address("127.0.0.1", 1), store=Endpoint("r2", "read")),
        "r2": ReaderNode("r2", listen=Address("127.0.0.1", 2), store=Endpoint("r1", "read")),
    }
    topology = Topology("t", Path("/nowhere/t.yaml"), (), frozen_map(), frozen_map(nodes))
    problems = check_wiring(topology)
    cycles = [p for p in problems if p.message.startswith("dependency cycle")]
    assert len(cycles) == 1
    assert cycles[0].message in (
        "dependency cycle: r1 -> r2 -> r1",
        "dependency cycle: r2 -> r1 -> r2",
    )
    assert cycles[0].line is None  # nothing to point at: the model was not loaded from a file
    # ...and each reference to a non-store is reported too.
    assert {p.path for p in problems if "expected a store node" in p.message} == {
        "nodes.r1.store",
        "nodes.r2.store",
    }


# -- commands ---------------------------------------------------------------------------------


def test_command_consumed_by_no_writer(edit, problems_of):
    text = edit(
        (
            "commands: [add_contact, update_contact, delete_contact]",
            "commands: [add_contact, update_contact]",
        )
    )
    assert problems_of(text) == [
        Problem(
            line_of(text, "delete_contact: {"),
            "commands.delete_contact",
            "topic 'CONTACT/DELETE' is consumed by no writer: its commands would never be applied; "
            "add the command to a writer's 'commands'",
        )
    ]


def test_command_published_by_no_gateway(edit, problems_of):
    text = edit(
        (
            "  delete_contact: {topic: CONTACT/DELETE, rpc: DeleteContact}\n",
            "  delete_contact: {topic: CONTACT/DELETE, rpc: DeleteContact}\n"
            "  purge_contact: {topic: CONTACT/PURGE, rpc: DeleteContact}\n",
        ),
        (
            "commands: [add_contact, update_contact, delete_contact]",
            "commands: [add_contact, update_contact, delete_contact, purge_contact]",
        ),
    )
    assert problems_of(text) == [
        Problem(
            line_of(text, "purge_contact: {"),
            "commands.purge_contact",
            "topic 'CONTACT/PURGE' is published by no gateway mutation: writer would wait for "
            "commands "
            "that never come",
        )
    ]


def test_two_commands_on_the_same_topic(edit, problems_of):
    text = edit(("topic: CONTACT/DELETE", "topic: CONTACT/UPDATE"))
    assert problems_of(text) == [
        Problem(
            line_of(text, "delete_contact: {"),
            "commands.delete_contact.topic",
            "topic 'CONTACT/UPDATE' is used by commands update_contact, delete_contact; each "
            "command needs its own topic",
        )
    ]


def test_unknown_command_in_writer_commands(edit, problems_of):
    text = edit(
        (
            "commands: [add_contact, update_contact, delete_contact]",
            "commands: [add_contact, update_contact, delete_contakt]",
        )
    )
    problems = problems_of(text)
    assert at(problems, "nodes.writer.commands[2]") == [
        "no command named 'delete_contakt'; did you mean 'delete_contact'?"
    ]
    assert [p.line for p in problems if p.path == "nodes.writer.commands[2]"] == [
        line_of(text, "delete_contakt")
    ]
    # The real command is now consumed by nobody, which is reported too.
    assert at(problems, "commands.delete_contact")


def test_unknown_command_in_a_mutation(edit, problems_of):
    problems = problems_of(edit(("command: update_contact", "command: update_contacts")))
    assert at(problems, "nodes.gateway.mutations.updateContact.command") == [
        "no command named 'update_contacts'; did you mean 'update_contact'?"
    ]


# -- files ------------------------------------------------------------------------------------


def test_missing_proto_and_schema_files(edit, problems_of):
    text = edit(
        ("proto: proto/contacts.proto", "proto: proto/nope.proto"),
        ("schema: schema/contacts.graphql", "schema: schema/nope.graphql"),
    )
    assert problems_of(text) == [
        Problem(
            line_of(text, "proto: proto/nope.proto"),
            "proto[0]",
            "file not found: proto/nope.proto (paths are relative to the topology file)",
        ),
        Problem(
            line_of(text, "schema/nope.graphql"),
            "nodes.gateway.schema",
            "file not found: schema/nope.graphql (paths are relative to the topology file)",
        ),
    ]


def test_files_are_relative_to_the_topology_file(shipped_text, tmp_path):
    from cqrs_flow.errors import TopologyError
    from cqrs_flow.topology import parse_topology

    with pytest.raises(TopologyError) as exc:
        parse_topology(shipped_text, tmp_path / "topology.yaml")
    assert {p.path for p in exc.value.problems} == {"proto[0]", "nodes.gateway.schema"}


def test_a_directory_is_not_a_schema_file(edit, problems_of):
    problems = problems_of(edit(("schema: schema/contacts.graphql", "schema: schema")))
    assert at(problems, "nodes.gateway.schema") == ["the file schema is not a regular file"]


# -- hand-built topologies --------------------------------------------------------------------


def test_check_wiring_on_a_hand_built_topology_without_problems():
    store = StoreNode("s", entities=("D",))
    nodes = {
        "b": BrokerNode("b"),
        "s": store,
        "r": ReaderNode("r", store=Endpoint("s", "read")),
        "w": WriterNode("w", broker="b", store=Endpoint("s", "write"), topics=("T/+",)),
        "g": GatewayNode(
            "g",
            broker="b",
            reader="r",
            schema=Path(""),
            mutations=frozen_map({"add": Mutation("add", command="c")}),
        ),
    }
    commands = frozen_map({"c": Command("c", topic="T/C", rpc="Add")})
    entities = frozen_map({"D": Entity("D", document="x.D", collection="d")})
    topology = Topology("t", Path("/nowhere/t.yaml"), (), commands, frozen_map(nodes), entities)
    assert check_wiring(topology) == []


def test_two_nodes_may_not_share_a_data_directory(edit, problems_of):
    problems = problems_of(
        edit(
            ("    key: id\n", "    key: id\n    data: var/store\n"),
            (
                "    schema: schema/contacts.graphql\n",
                "    schema: schema/contacts.graphql\n    data: var/../var/store\n",
            ),
        )
    )
    assert at(problems, "nodes.gateway.data") == [
        "directory 'var/../var/store' is the data directory of node 'store' too; give each node "
        "its own"
    ]


# -- files outside the project --------------------------------------------------------------------


def test_schema_path_leading_out_of_the_project_is_refused(edit, problems_of):
    text = edit(("schema: schema/contacts.graphql", "schema: ../../etc/passwd"))
    [message] = at(problems_of(text), "nodes.gateway.schema")
    assert message.startswith("../../etc/passwd leads out of the project directory")
    assert "root: .." in message


def test_proto_and_plugin_paths_leading_out_are_refused(edit, problems_of):
    text = edit(
        (
            "proto: proto/contacts.proto",
            "proto: [proto/contacts.proto, proto/../../x.proto]\nplugin_path: ../plugins",
        )
    )
    problems = problems_of(text)
    assert at(problems, "proto[1]") and "leads out of the project" in at(problems, "proto[1]")[0]
    assert "leads out of the project" in at(problems, "plugin_path[0]")[0]


def test_root_widens_the_project(edit, parse, shipped):
    up = shipped.root.name
    text = edit(("proto: proto/contacts.proto", f"root: ..\nproto: ../{up}/proto/contacts.proto"))
    assert project_directory(parse(text)) == shipped.root.parent.resolve()


def test_oversized_schema_file_is_refused(make_project, tmp_path):
    topology = make_project()
    schema = topology.parent / "schema" / "contacts.graphql"
    schema.write_text("# padding\n" * 500_000)
    with pytest.raises(
        TopologyError, match=r"nodes.gateway.schema.*is 5000000 bytes; it may be at most 4194304"
    ):
        load_topology(topology)


def test_gateway_limits_cors_and_introspection_keys(edit, parse, problems_of):
    gateway = parse(edit()).nodes["gateway"]
    assert gateway.limits.depth == 15 and gateway.introspection and gateway.cors_origins == ()
    text = edit(
        (
            "    kind: gateway\n",
            "    kind: gateway\n    introspection: false\n    limits: {depth: 4}\n"
            "    cors: {origins: [https://app.example.com]}\n",
        )
    )
    gateway = parse(text).nodes["gateway"]
    assert (gateway.limits.depth, gateway.limits.fields) == (4, 500)
    assert gateway.cors_origins == ("https://app.example.com",) and not gateway.introspection
    bad = edit(
        (
            "    kind: gateway\n",
            "    kind: gateway\n    limits: {deph: 4, fields: 0}\n"
            "    cors: {origins: [https://app.example.com/path]}\n",
        )
    )
    problems = problems_of(bad)
    assert at(problems, "nodes.gateway.limits.deph") == ["unknown key; did you mean 'depth'?"]
    assert at(problems, "nodes.gateway.limits.fields") == [
        "expected a whole number of at least 1, got 0"
    ]
    assert "no path" in at(problems, "nodes.gateway.cors.origins")[0]


def test_list_count_follows_the_store_behind_the_reader_unless_set(edit, parse):
    topology = parse(edit(("    kind: store\n", "    kind: store\n    list_limit: 5000\n")))
    assert topology.list_count(topology.nodes["gateway"]) == 5000
    topology = parse(
        edit(("    kind: gateway\n", "    kind: gateway\n    limits: {list_count: 20}\n"))
    )
    assert topology.list_count(topology.nodes["gateway"]) == 20
    assert parse(edit()).list_count(parse(edit()).nodes["gateway"]) == 1000


def test_writer_replicas_need_shared_subscriptions_and_last_writer_wins(edit, problems_of, parse):
    replicas = ("    kind: writer\n", "    kind: writer\n    replicas: 3\n")
    problems = problems_of(edit(replicas))
    messages = sorted(at(problems, "nodes.writer.replicas"))
    assert len(messages) == 2
    assert "set nodes.store.last_writer_wins: true" in messages[0]
    assert messages[1].startswith(
        "writers sharing their subscriptions need MQTT shared subscriptions, which "
        "the embedded broker (amqtt) does not have"
    )
    external = (
        "    kind: broker\n    listen: 127.0.0.1:1883\n",
        "    kind: broker\n    url: mqtt://127.0.0.1:1885\n",
    )
    converging = ("    kind: store\n", "    kind: store\n    last_writer_wins: true\n")
    writer = parse(edit(replicas, external, converging)).nodes["writer"]
    assert (writer.replicas, writer.share_group) == (3, "writer")


def test_data_directories_may_not_lead_out_of_the_project(edit, problems_of):
    problems = problems_of(
        edit(
            ("    key: id\n", "    key: id\n    data: ../store-data\n"),
            (
                "    schema: schema/contacts.graphql\n",
                "    schema: schema/contacts.graphql\n    data: ../gateway-data\n",
            ),
        )
    )
    assert "leads out of the project" in at(problems, "nodes.store.data")[0]
    assert "leads out of the project" in at(problems, "nodes.gateway.data")[0]


# -- projections -------------------------------------------------------------------------------

LIBRARY = Path(__file__).resolve().parents[3] / "examples" / "library" / "topology.yaml"


def library_problems(*edits: tuple[str, str]) -> list[Problem]:
    from cqrs_flow.topology import parse_topology

    text = LIBRARY.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    with pytest.raises(TopologyError) as exc:
        parse_topology(text, LIBRARY)
    return exc.value.problems


def test_the_library_with_its_projection_loads():
    topology = load_topology(LIBRARY)
    loans = topology.nodes["loans"]
    assert (loans.follows, str(loans.store), loans.entity) == (
        "store",
        "store.write",
        "MemberLoans",
    )
    assert (loans.on_error, loans.batch, loans.plugin.use) == (
        "stop",
        500,
        "projections.LoansPerMember",
    )
    assert loans.dependencies == ("store",)
    assert topology.projections_into(topology.nodes["store"]) == [loans]


def test_a_projection_following_a_store_names_its_read_side():
    problems = library_problems(("    follows: store.read ", "    follows: store "))
    assert at(problems, "nodes.loans.follows") == [
        "a projection follows a store's read side: write 'store.read'"
    ]


def test_a_projection_follows_a_reader_or_a_store_and_writes_a_write_side():
    problems = library_problems(
        ("    follows: store.read ", "    follows: writer "),
        (
            "    store: store.write\n    entity: MemberLoans",
            "    store: store.read\n    entity: MemberLoans",
        ),
    )
    assert at(problems, "nodes.loans.follows") == [
        "'writer' is a writer node; expected a reader or a store"
    ]
    assert "read/write segregation" in at(problems, "nodes.loans.store")[0]


def test_a_projections_read_model_is_an_entity_of_its_store_and_its_alone():
    problems = library_problems(("    entity: MemberLoans\n", "    entity: MemberLoan\n"))
    assert at(problems, "nodes.loans.entity") == [
        "no entity named 'MemberLoan'; did you mean 'MemberLoans'?"
    ]
    problems = library_problems(
        ("    entities: [Author, Book, Loan, MemberLoans]", "    entities: [Author, Book, Loan]")
    )
    assert (
        "is not held by store 'store', where the projection writes"
        in (at(problems, "nodes.loans.entity")[0])
    )
    second = (
        "  writer:\n    kind: writer",
        "  again:\n    kind: projection\n    follows: store.read\n    store: store.write\n"
        "    entity: MemberLoans\n    plugin: projections.LoansPerMember\n"
        "  writer:\n    kind: writer",
    )
    problems = library_problems(second)
    assert at(problems, "nodes.again.entity") == [
        "entity 'MemberLoans' is the read model of projection 'loans' already; a read model has "
        "one projection"
    ]


def test_the_keys_of_a_projection_are_checked_with_a_suggestion():
    problems = library_problems(
        ("    entity: MemberLoans\n", "    entity: MemberLoans\n    on_eror: stop\n    batch: 0\n")
    )
    assert at(problems, "nodes.loans.on_eror") == ["unknown key; did you mean 'on_error'?"]
    assert at(problems, "nodes.loans.batch") == ["expected a whole number of at least 1, got 0"]
    problems = library_problems(("    follows: store.read ", "    follows: reader.write "))
    assert at(problems, "nodes.loans.follows")[0].startswith(
        "expected a reader node's name or '<store node>.read', got 'reader.write'"
    )


def test_a_stores_retention_is_checked_and_loaded():
    problems = library_problems(
        ("    entities: [Author, Book, Loan, MemberLoans]\n",
         "    entities: [Author, Book, Loan, MemberLoans]\n    retention: {changes: 0, age: 1w,"
         " size: 3}\n"),
    )  # fmt: skip
    assert at(problems, "nodes.store.retention.changes") == [
        "expected a whole number of at least 1, got 0"
    ]
    assert at(problems, "nodes.store.retention.age")[0].startswith("expected a duration")
    assert at(problems, "nodes.store.retention.size") == [
        "unknown key; expected one of changes, age"
    ]
    from cqrs_flow.topology import parse_topology

    held = "    entities: [Author, Book, Loan, MemberLoans]\n"
    text = LIBRARY.read_text().replace(held, held + "    retention: {changes: 1000, age: 7d}\n")
    store = parse_topology(text, LIBRARY).nodes["store"]
    assert (store.retention.changes, store.retention.age) == (1000, 7 * 86400.0)
    assert str(store.retention) == "keep the last 1,000 changes and changes younger than 604800 s"
    assert str(load_topology(LIBRARY).nodes["store"].retention) == "keep everything"


# -- a reader's read model and its process -------------------------------------------------------

READER_STORE = "    store: store.read\n    plugins: [plugins.contacts.ReverseName]"


def test_a_read_model_is_on_with_true_and_takes_its_defaults_from_the_table(edit, parse):
    from cqrs_flow.topology import spec

    reader = parse(edit((READER_STORE, READER_STORE + "\n    read_model: true"))).nodes["reader"]
    assert isinstance(reader, ReaderNode) and reader.read_model is not None
    assert reader.read_model.entities == ()
    assert reader.read_model.staleness == spec.READ_MODEL.fields["staleness"].default
    off = parse(edit((READER_STORE, READER_STORE + "\n    read_model: false"))).nodes["reader"]
    assert isinstance(off, ReaderNode) and off.read_model is None
    assert parse(edit()).nodes["reader"].read_model is None  # type: ignore[union-attr]


def test_a_read_model_keeps_entities_of_its_store_only(edit, problems_of):
    text = edit((READER_STORE, READER_STORE + "\n    read_model: {entities: [Contct]}"))
    assert at(problems_of(text), "nodes.reader.read_model.entities[0]") == [
        "store 'store' holds no entity 'Contct'; did you mean 'Contact'?"
    ]


def test_a_read_model_with_a_bad_key_is_named_with_its_line(edit, problems_of):
    text = edit((READER_STORE, READER_STORE + "\n    read_model: {stalenes: 2s}"))
    [problem] = problems_of(text)
    assert problem.path == "nodes.reader.read_model.stalenes"
    assert problem.line == line_of(text, "read_model:")
    assert "did you mean 'staleness'" in problem.message


def test_a_reader_shares_a_process_only_with_the_gateway_reading_from_it(edit, parse, problems_of):
    placed = parse(edit((READER_STORE, READER_STORE + "\n    process: gateway")))
    assert placed.host_of("reader") == "gateway" and placed.guests_of("gateway") == ["reader"]
    assert placed.host_of("gateway") == "gateway"
    text = edit((READER_STORE, READER_STORE + "\n    process: gatway"))
    assert at(problems_of(text), "nodes.reader.process") == [
        "no gateway named 'gatway'; did you mean 'gateway'?; a reader shares a process only "
        "with a gateway that reads from it"
    ]
    text = edit((READER_STORE, READER_STORE + "\n    process: store"))
    assert len(at(problems_of(text), "nodes.reader.process")) == 1
