"""MQTT topic filters: syntax, matching, and how writers select commands with them."""

from __future__ import annotations

import pytest

from cqrs_flow.topology.topics import filter_problem, matches

from ..helpers import line_of


@pytest.mark.parametrize(
    "topic_filter, topic, expected",
    [
        ("CONTACT/ADD", "CONTACT/ADD", True),
        ("CONTACT/+", "CONTACT/ADD", True),
        ("CONTACT/+", "CONTACT/ADD/x", False),
        ("CONTACT/#", "CONTACT/ADD/x", True),
        ("CONTACT/#", "CONTACT", True),  # '#' also matches the parent level
        ("+/ADD", "CONTACT/ADD", True),
        ("+/+", "CONTACT", False),
        ("#", "a/b/c", True),
        ("CONTACT/ADD", "CONTACT/ADDX", False),
    ],
)
def test_matches(topic_filter, topic, expected):
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic_filter", ["a/#/b", "a#", "a/b+", "", "$SYS/#"])
def test_malformed_filters(topic_filter):
    assert filter_problem(topic_filter)


@pytest.mark.parametrize("topic_filter", ["a/+/b", "#", "+", "a/b/#"])
def test_wellformed_filters(topic_filter):
    assert filter_problem(topic_filter) is None


WRITER_BY_NAME = "    commands: [add_contact, update_contact, delete_contact]\n"


def test_a_writer_selecting_commands_by_filter(edit, parse):
    topology = parse(edit((WRITER_BY_NAME, "    topics: [CONTACT/+]\n")))
    writer = topology.nodes["writer"]
    assert topology.commands_of(writer) == ["add_contact", "update_contact", "delete_contact"]
    assert [w.name for w in topology.writers_of("delete_contact")] == ["writer"]


def test_a_filter_that_matches_no_command_is_reported(edit, problems_of):
    text = edit((WRITER_BY_NAME, "    topics: [CONTACT/+, PEOPLE/#]\n"))
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("nodes.writer.topics[1]", line_of(text, "PEOPLE/#"))
    ]
    assert "filter 'PEOPLE/#' matches no command topic" in problems[0].message


def test_a_malformed_filter_is_reported(edit, problems_of):
    problems = problems_of(edit((WRITER_BY_NAME, "    topics: [CONTACT/#/x]\n")))
    assert any(
        p.path == "nodes.writer.topics"
        and "'#' must be a whole level and the last one" in p.message
        for p in problems
    )


def test_a_writer_with_neither_commands_nor_topics(edit, problems_of):
    problems = problems_of(edit((WRITER_BY_NAME, "")))
    assert any(
        p.path == "nodes.writer" and "needs 'commands' (names) or 'topics'" in p.message
        for p in problems
    )


def test_a_command_topic_must_not_be_a_filter(edit, problems_of):
    problems = problems_of(edit(("{topic: CONTACT/ADD,", "{topic: CONTACT/+,")))
    assert any(
        p.path == "commands.add_contact.topic" and "not a filter" in p.message for p in problems
    )


def test_an_external_broker_has_no_listen_and_the_embedded_one_speaks_3_1_1(
    edit, problems_of, parse
):
    external = parse(edit(("    listen: 127.0.0.1:1883\n", "    url: mqtt://10.1.2.3\n")))
    broker = external.nodes["broker"]
    assert broker.external and str(broker.address) == "10.1.2.3:1883" and broker.listens == ()
    both = problems_of(
        edit(("    listen: 127.0.0.1:1883\n", "    listen: 127.0.0.1:1883\n    url: mqtt://h:1\n"))
    )
    assert [p.path for p in both] == ["nodes.broker.listen"]
    five = problems_of(
        edit(("    listen: 127.0.0.1:1883\n", '    listen: 127.0.0.1:1883\n    protocol: "5"\n'))
    )
    assert [p.path for p in five] == ["nodes.broker.protocol"]
