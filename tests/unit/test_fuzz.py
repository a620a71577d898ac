"""Property-based tests of the inputs anyone can send: commands on MQTT, topology files, queries.

Budgets come from the hypothesis profiles in tests/conftest.py (`ci` by default).
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from cqrs_flow.contracts.writer import writer_plan
from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.nodes.gateway.limits import LimitExceeded, check_query, check_variables
from cqrs_flow.nodes.writer import Command, Refused, decode_command
from cqrs_flow.protobuf.messages import is_repeated
from cqrs_flow.topology import load_topology, parse_topology
from cqrs_flow.topology.model import Limits
from cqrs_flow.topology.problems import Problems

from .helpers import SHIPPED

SHIPPED_TEXT = SHIPPED.read_text(encoding="utf-8")
PAYLOAD_BYTES = 512

# -- command decoding in the writer ---------------------------------------------------------------


@pytest.fixture(scope="module")
def plans(shipped_protos):
    topology = load_topology(SHIPPED)
    report = Problems(topology.located)
    plans = writer_plan(topology, topology.nodes["writer"], shipped_protos, report)
    assert not report.problems and plans
    return plans


def _valid_payloads(plans) -> st.SearchStrategy[tuple[str, bytes]]:
    """A real command on its topic, serialised, then perhaps cut short or with bytes changed."""

    def make(
        topic: str, key: str, name: str, cut: int, flips: list[tuple[int, int]]
    ) -> tuple[str, bytes]:
        message = plans[topic].request()
        for field in message.DESCRIPTOR.fields:
            if field.type == field.TYPE_STRING and not is_repeated(field):
                setattr(message, field.name, name if field.name != "id" else key)
        payload = bytearray(message.SerializeToString())
        for position, value in flips:
            if payload:
                payload[position % len(payload)] = value
        return topic, bytes(payload[: len(payload) - cut] if cut else payload)

    return st.builds(
        make,
        st.sampled_from(sorted(plans)),
        st.text(max_size=30),
        st.text(max_size=60),
        st.integers(0, 3),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    )


def _messages(plans) -> st.SearchStrategy[tuple[str, bytes]]:
    topics = st.one_of(
        st.sampled_from(sorted(plans)),
        st.text(max_size=80),
        st.sampled_from(sorted(plans)).map(lambda t: t + "/extra"),
    )
    return st.one_of(
        st.tuples(topics, st.binary(max_size=2 * PAYLOAD_BYTES)), _valid_payloads(plans)
    )


def check_decoding(plans, topic: str, payload: bytes) -> None:
    decoded = decode_command(plans, topic, payload, PAYLOAD_BYTES)
    assert isinstance(decoded, (Command, Refused))
    if topic not in plans:
        assert decoded == Refused("unknown topic", f"{topic} is no command's topic")
    elif len(payload) > PAYLOAD_BYTES:
        assert isinstance(decoded, Refused) and decoded.kind == "oversized"
    elif isinstance(decoded, Refused):
        assert decoded.kind == "undecodable" and decoded.plan is plans[topic]
        assert decoded.reason.startswith(f"not a valid {plans[topic].request.DESCRIPTOR.full_name}")
    else:
        assert decoded.plan is plans[topic] and isinstance(decoded.key, str)


@given(data=st.data())
def test_command_decoding_never_raises(plans, data) -> None:
    check_decoding(plans, *data.draw(_messages(plans)))


@pytest.mark.parametrize(
    "topic, payload",
    [
        ("CONTACT/ADD", b"\x0a" * 600),  # oversized
        ("CONTACT/ADD", b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"),  # a varint too long
        ("CONTACT/ADD", b"\x0a\x02\x0a\xff"),  # a string that is not UTF-8
        ("no/such/topic", b""),
    ],
)
def test_command_decoding_examples(plans, topic, payload) -> None:
    check_decoding(plans, topic, payload)


# -- the topology loader --------------------------------------------------------------------------

_SNIPPETS = [
    "a: &a [1, 2]\nb: [*a, *a, *a]",
    "<<: *nowhere",
    "x: !!python/object:os.system ls",
    "? [a]\n: b",
    "nodes: {gateway: {kind: gateway, limits: {depth: -1}}}",
    "proto: ../../../etc/passwd",
    "root: /",
    "nodes: []",
    "commands: null",
    "  kind: gateway\n  limits: {body_bytes: 1e99}",
    "name: \x00",
    "%YAML 1.1\n---",
    "--- a\n--- b",
    "&x a: *x",
    "'unclosed",
    "key: 'x' 'y'",
    "nodes: {g: {kind: gateway, cors: {origins: [ftp://x]}}}",
    "status_topic: a/#",
]


def _yaml_values() -> st.SearchStrategy:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=20),
        st.sampled_from(["0", "3s", "kind", "gateway", "127.0.0.1:1"]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=12,
    )


def _edited_shipped() -> st.SearchStrategy[str]:
    """The shipped topology with one value somewhere replaced by an arbitrary one."""
    data = yaml.safe_load(SHIPPED_TEXT)
    paths: list[tuple] = []

    def walk(value, path):
        paths.append(path)
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, path + (key,))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, path + (index,))

    walk(data, ())

    def edit(path: tuple, value) -> str:
        copy = yaml.safe_load(SHIPPED_TEXT)
        if not path:
            return yaml.safe_dump(value)
        place = copy
        for part in path[:-1]:
            place = place[part]
        place[path[-1]] = value
        return yaml.safe_dump(copy, sort_keys=False)

    return st.builds(edit, st.sampled_from(paths), _yaml_values())


def _spliced_shipped() -> st.SearchStrategy[str]:
    """The shipped text with a line replaced by a hostile snippet or arbitrary text."""
    lines = SHIPPED_TEXT.splitlines()
    return st.builds(
        lambda at, snippet: "\n".join(lines[:at] + [snippet] + lines[at + 1 :]),
        st.integers(0, len(lines) - 1),
        st.one_of(st.sampled_from(_SNIPPETS), st.text(max_size=40)),
    )


@given(st.one_of(st.text(max_size=300), _edited_shipped(), _spliced_shipped()))
@example(
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
)
@example("a: &a\n  b: *a\n")
@example(
    SHIPPED_TEXT.replace(
        "add_contact:    {topic: CONTACT/ADD,    rpc: AddContact}", "add_contact: {}"
    )
)
def test_topology_text_is_a_topology_or_a_topology_error(text: str) -> None:
    try:
        topology = parse_topology(text, SHIPPED)
    except TopologyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert isinstance(problem, Problem) and problem.message
            assert problem.path or problem.line or problem.message.startswith("not valid YAML")
    else:
        assert topology.nodes


# -- the gateway's measure of a query -------------------------------------------------------------

_GRAPHQL = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    "...",
    "on",
    "@include(if: true)",
    "$v",
    "=",
    "!",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "F",
    "listContacts",
    "contact",
    "id",
    "name",
    "count",
    "1",
    "-5",
    "1e3",
    '"s"',
    '"\\"',
    '"""b"""',
    '"""',
    '"',
    "#c\n",
    "__schema",
    "__type",
    "__typename",
    "a:",
    "b",
    "\\",
    "\n",
    "\x00",
    "é",
]
GRAPHQLISH = st.lists(st.sampled_from(_GRAPHQL), max_size=200).map(" ".join)


@given(
    st.one_of(GRAPHQLISH, st.text(max_size=500)),
    st.builds(
        Limits,
        depth=st.integers(1, 20),
        fields=st.integers(1, 50),
        aliases=st.integers(1, 5),
        tokens=st.integers(1, 300),
        list_length=st.integers(1, 10),
        string_length=st.integers(1, 10),
    ),
)
def test_the_query_measure_only_ever_refuses(query: str, limits: Limits) -> None:
    try:
        check_query(query, limits)
    except LimitExceeded as exc:
        assert str(exc)
    else:
        # what it lets through has no more brackets open at once than the limits allow
        depth = deepest = 0
        for char in query:
            if char in "{[(":
                depth += 1
            elif char in "}])":
                depth -= 1
            deepest = max(deepest, depth)
        assert '"' in query or deepest <= 2 * limits.depth + 2


@given(
    _yaml_values(),
    st.builds(
        Limits,
        depth=st.integers(1, 5),
        list_length=st.integers(1, 5),
        string_length=st.integers(1, 10),
    ),
)
def test_the_variables_measure_only_ever_refuses(variables, limits: Limits) -> None:
    try:
        check_variables(variables, limits)
    except LimitExceeded as exc:
        assert "limits." in str(exc)
