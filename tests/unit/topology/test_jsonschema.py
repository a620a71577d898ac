"""jsonschema: the JSON Schema generated from spec.py, kept in step with it and with the loader.

Known difference, by nature of JSON: the schema's "integer" also accepts 8080.0, which the
loader refuses for a port or a count.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cqrs_flow.cli import main
from cqrs_flow.errors import TopologyError
from cqrs_flow.topology import load_topology, parse_topology, spec
from cqrs_flow.topology.jsonschema import UnmappedType, schema_text, topology_schema
from cqrs_flow.topology.problems import format_path
from cqrs_flow.topology.yamlsource import LocatedData, parse_yaml

from ..helpers import ROOT, SHIPPED

SCHEMA_FILE = ROOT / "topology.schema.json"
TOPOLOGY_FILES = sorted(
    [SHIPPED, *ROOT.glob("tests/topologies/*.yaml"), *ROOT.glob("examples/*/topology.yaml")]
)
DELETE = object()  # in a case below: remove the key


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="pip install -e '.[test]'")
    schema = topology_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator, data: Any) -> list[str]:
    """Each error as 'key.path: message'."""
    return [
        f"{format_path(tuple(e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    ]


def spec_problems(data: Any) -> list[str]:
    return [f"{p.path}: {p.message}" for p in spec.check(LocatedData(data))[1]]


# -- (a) the committed schema is the generated one ---------------------------------------------


def test_the_committed_schema_is_up_to_date():
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == json.loads(schema_text()), (
        "topology.schema.json is out of step with cqrs_flow/topology/spec.py; regenerate it with "
        "`cqrs-flow schema > topology.schema.json`"
    )


def test_schema_command_prints_it():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.output == schema_text()
    assert json.loads(result.output)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_shipped_topology_points_editors_at_the_schema():
    for path in TOPOLOGY_FILES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        if first.startswith("# yaml-language-server: $schema="):
            assert (path.parent / first.split("=", 1)[1]).resolve() == SCHEMA_FILE, path
    assert SHIPPED.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=topology.schema.json\n"
    )


# -- what the schema is made of ---------------------------------------------------------------


def test_every_key_of_the_table_is_in_the_schema():
    schema = topology_schema()
    assert list(schema["properties"]) == list(spec.TOPOLOGY.fields)
    nodes = schema["properties"]["nodes"]["additionalProperties"]
    assert nodes["properties"]["kind"]["enum"] == list(spec.NODE_KINDS)
    for branch, (kind, section) in zip(nodes["allOf"], spec.NODE_KINDS.items(), strict=True):
        assert branch["if"]["properties"]["kind"] == {"const": kind}
        assert list(branch["then"]["properties"]) == list(section.fields)
        assert branch["then"]["additionalProperties"] is False
        assert branch["then"]["required"] == [k for k, f in section.fields.items() if f.required]


def test_docs_defaults_and_choices_come_from_the_table():
    store = topology_schema()["properties"]["nodes"]["additionalProperties"]["allOf"][1]["then"]
    assert store["properties"]["list_limit"]["description"] == spec.STORE.fields["list_limit"].doc
    assert store["properties"]["list_limit"]["default"] == 1000
    operation = store["properties"]["write"]["properties"]["rpcs"]["additionalProperties"]
    assert all(
        f"|{op}|" in operation["pattern"].replace("(", "|").replace(")", "|")
        for op in spec.STORE_OPS
    )
    broker = topology_schema()["properties"]["nodes"]["additionalProperties"]["allOf"][0]["then"]
    assert broker["properties"]["listen"]["default"] == "127.0.0.1:1883"
    assert topology_schema()["properties"]["ready_timeout"]["default"] == "30s"


def test_the_entities_and_their_forms_come_from_the_table():
    schema = topology_schema()
    entity = schema["properties"]["entities"]["additionalProperties"]
    assert list(entity["properties"]) == list(spec.ENTITY.fields)
    assert entity["required"] == ["document"]
    relation = entity["properties"]["relations"]["additionalProperties"]
    assert list(relation["properties"]) == ["entity", "key", "by"]
    assert relation["properties"]["by"]["description"] == spec.RELATION.fields["by"].doc
    nodes = schema["properties"]["nodes"]["additionalProperties"]["allOf"]
    store = next(b["then"] for b in nodes if b["if"]["properties"]["kind"]["const"] == "store")
    assert store["oneOf"] == [{"required": ["entities"]}, {"required": ["document"]}]
    gateway = next(b["then"] for b in nodes if b["if"]["properties"]["kind"]["const"] == "gateway")
    query = gateway["properties"]["queries"]["additionalProperties"]["anyOf"][1]
    assert query["oneOf"] == [{"required": [k]} for k in ("rpc", "list", "get")]
    assert gateway["properties"]["limits"]["properties"]["page_size"]["default"] == 20


# Keywords of draft-07 that mean the same in 2020-12; editors' YAML language server knows draft-07.
DRAFT_07_KEYWORDS = {
    "$schema",
    "title",
    "description",
    "default",
    "examples",
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "items",
    "anyOf",
    "allOf",
    "oneOf",
    "if",
    "then",
    "pattern",
    "minLength",
    "minimum",
    "maximum",
}


def test_the_schema_uses_only_keywords_editors_know():
    def keywords(schema: Any) -> set[str]:
        if not isinstance(schema, dict):
            return set()
        found = set(schema)
        for key, value in schema.items():
            if key == "properties":
                found |= set().union(*(keywords(v) for v in value.values()))
            elif key in ("anyOf", "allOf"):
                found |= set().union(*(keywords(v) for v in value))
            elif key in ("additionalProperties", "propertyNames", "items", "if", "then"):
                found |= keywords(value)
        return found

    assert keywords(topology_schema()) <= DRAFT_07_KEYWORDS


def with_extra_field(monkeypatch, field: spec.Field) -> None:
    monkeypatch.setattr(spec, "TOPOLOGY", spec.Section({**spec.TOPOLOGY.fields, "extra": field}))


def test_a_type_with_no_mapping_is_an_error_not_a_hole(monkeypatch):
    def port_range(value: Any) -> Any:
        return value

    with_extra_field(monkeypatch, spec.Field(port_range))
    with pytest.raises(
        UnmappedType,
        match=r"extra: no JSON Schema for spec type 'port_range'; "
        r"add it to _SCALARS",
    ):
        topology_schema()


def test_one_of_choices_are_read_from_an_attribute_when_spec_sets_one(monkeypatch):
    choice = spec.one_of("a")
    choice.choices = ("a", "b")  # what spec.one_of may expose one day instead of its closure
    with_extra_field(monkeypatch, spec.Field(choice))
    assert topology_schema()["properties"]["extra"] == {"enum": ["a", "b"]}


def test_a_default_that_cannot_be_written_back_is_an_error(monkeypatch):
    with_extra_field(monkeypatch, spec.Field(spec.parse_duration, default=1e-7))
    with pytest.raises(UnmappedType, match="extra: default 1e-07 written as '1e-07s'"):
        topology_schema()


# -- (b) real topology files are valid ----------------------------------------------------------


@pytest.mark.parametrize("path", TOPOLOGY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_topology_files_are_valid_where_the_spec_says_so(validator, path: Path):
    data = parse_yaml(path.read_text(encoding="utf-8")).data
    assert schema_errors(validator, data) == spec_problems(data) == []
    try:
        load_topology(path)
    except (
        TopologyError
    ) as exc:  # a wiring problem (on purpose in tests/topologies): not the schema's
        assert not any(p in str(exc) for p in ("unknown key", "expected", "missing required"))


# -- (c) invalid documents: both refuse them ----------------------------------------------------


@pytest.mark.parametrize(
    "old, new, path",
    [
        ("delay: 3s", "dealy: 3s", "nodes.writer.dealy"),  # unknown key
        ("kind: broker", "kind: borker", "nodes.broker.kind"),  # wrong kind
        (
            "listen: 127.0.0.1:8080",
            "listen: 127.0.0.1:80800",
            "nodes.gateway.listen",
        ),  # bad address
        ("listen: 127.0.0.1:8080", "listen: localhost", "nodes.gateway.listen"),
        ("delay: 3s", "delay: 3 sec", "nodes.writer.delay"),
        ("topic: CONTACT/ADD", "topic: CONTACT/#", "commands.add_contact.topic"),
        ("store: store.read", "store: store.raed", "nodes.reader.store"),
        ("    document: contacts.Contact\n", "", "nodes.store"),  # missing required key
    ],
)
def test_schema_and_loader_refuse_the_same_documents(validator, edit, old, new, path):
    text = edit((old, new))
    with pytest.raises(TopologyError) as exc:
        parse_topology(text, SHIPPED)
    assert path in {p.path for p in exc.value.problems}
    errors = schema_errors(validator, parse_yaml(text).data)
    assert errors, "the schema accepted a document the loader refuses"
    assert any(path.startswith(e.split(": ", 1)[0]) for e in errors), errors


# -- (d) value by value, the schema accepts what spec.check accepts -----------------------------

AGREEMENT = [
    # listen addresses: parse_address
    (
        "nodes.broker.listen",
        [
            1883,
            "127.0.0.1:1883",
            "localhost:8080",
            "[::1]:50051",
            "0.0.0.0:0080",
            "::1:80",
            "h:65535",
        ],
        [
            0,
            65536,
            -1,
            True,
            "127.0.0.1",
            ":8080",
            "h:0",
            "h:65536",
            "[]:80",
            "[::1]80",
            "[a]:1]:2",
            "h:80a",
            "h:",
            None,
        ],
    ),
    # durations: parse_duration
    (
        "nodes.writer.delay",
        [0, 3, 2.5, "3s", "500ms", "1.5m", " 3 s ", "7"],
        [-1, "3 sec", "-3s", ".5s", "", True, None, [3]],
    ),
    (
        "commands.add_contact.topic",
        ["CONTACT/ADD", "a b/c", "/"],
        ["", "CONTACT/+", "#", "$SYS/x", "a\x00b", 5],
    ),
    (
        "nodes.reader.store",
        ["store.read", "store.write", "my-store.read"],
        ["store.wirte", "store", "a.b.read", "1store.read", ""],
    ),
    ("nodes.writer.broker", ["broker", "my-broker_2", "_b"], ["2broker", "a.b", "", 7]),
    (
        "nodes.reader.service",
        ["contacts.ContactReader", "Reader"],
        ["contacts..Reader", "a.b-c", ""],
    ),
    ("nodes.store.list_limit", [1, 1000], [0, -5, "10", True]),
    ("nodes.gateway.playground", [True, False], ["yes", 1, None]),
    ("nodes.store.write.rpcs.AddContact", ["insert", "list"], ["upsert", ""]),
    (
        "nodes.gateway.mutations.addContact.generate",
        [{"contact.id": "uuid"}, {}, None],
        [{"contact.id": "uuid4"}, {"contact..id": "uuid"}],
    ),
    ("nodes.writer.commands", ["add_contact", ["add_contact"], []], [["bad name"], [1], {}]),
    # a section with a shorthand
    (
        "nodes.gateway.queries.contact",
        [
            "GetContact",
            {"rpc": "GetContact"},
            {"rpc": "GetContact", "result": "contact", "arguments": {"id": "id"}},
        ],
        [{"result": "contact"}, {"rcp": "GetContact"}, None, ["GetContact"]],
    ),
    ("nodes.gateway.queries", [{}, None], [[], "GetContact"]),
    (
        "nodes.gateway.mutations.addContact",
        ["add_contact", {"command": "add_contact"}],
        [{"message": "x"}, {"command": "add_contact", "mesage": "x"}],
    ),
    ("nodes.writer.dealy", [DELETE], ["3s"]),
    ("nodes.store.document", ["contacts.Contact"], [DELETE]),
    ("nodes.broker.kind", ["broker"], ["borker", None, DELETE]),
    ("nodes.broker", [{"kind": "broker"}], [{"kind": "store"}, "broker", None]),
    ("proto", ["a.proto", ["a.proto", "b.proto"], []], ["", [""], None]),
    ("name", ["contacts", "my-system"], ["my system", ""]),
    # keys being added to spec.py
    (
        "nodes.broker.url",
        ["mqtt://mqtt.example.com:1883", "mqtt://u:p@[::1]", "tcp://h/"],
        ["mqtt://h:99999", "http://h", "mqtt://", 1883],
    ),
    (
        "nodes.writer.topics",
        ["CONTACT/+", ["CONTACT/#", "#"], "+/+"],
        ["CONTACT/#/x", "CONT+", "", "$SYS/#", [""]],
    ),
    (
        "nodes.reader.plugins",
        [["plugins.x.Y"], [{"use": "x", "config": {"a": [1, {"b": None}]}}], []],
        [[{"config": {}}], "plugins.x.Y", [{"use": "x", "extra": 1}]],
    ),
    # several entities: their section, a store holding them, list/get queries, Entity.op
    (
        "entities",
        [
            {},
            None,
            {"Book": {"document": "lib.Book"}},
            {
                "Book": {
                    "document": "lib.Book",
                    "collection": "books",
                    "key": "isbn",
                    "timestamp": "updated_at",
                    "indexes": ["title", "author_id"],
                    "relations": {
                        "author": {"entity": "Author", "key": "author_id"},
                        "loans": {"entity": "Loan", "by": "book_id"},
                        "other": {"entity": "Author", "key": "a", "by": "b"},  # validate says
                    },
                }
            },
        ],
        [
            {"Book": {}},
            {"Book": {"document": "lib..Book"}},
            {"Book": {"document": "lib.Book", "indexs": ["title"]}},
            {"Book": {"document": "lib.Book", "indexes": "title"}},
            {"Book": {"document": "lib.Book", "indexes": ["a.b"]}},
            {"Book": {"document": "lib.Book", "relations": {"author": {"key": "author_id"}}}},
            {"Book": {"document": "lib.Book", "relations": {"a": {"entity": "A", "kye": "k"}}}},
            {"Book": {"document": "lib.Book", "relations": {"a": "Author"}}},
            {"Big Book": {"document": "lib.Book"}},
            ["Book"],
        ],
    ),
    ("nodes.store.entities", [DELETE], [["Contact"], "Contact", []]),
    (
        "nodes.gateway.queries.contacts",
        [{"list": "Contact"}, {"get": "Contact"}],
        [
            {"list": "Contact", "rpc": "ListContacts"},
            {"list": "Contact", "get": "Contact"},
            {"list": "contacts.Contact"},
            {"get": ""},
            {"arguments": {}},
        ],
    ),
    (
        "nodes.gateway.mutations.updateContact.exists",
        ["GetContact", "Contact", "contacts.GetContact"],
        ["", "Get Contact", 3],
    ),
    ("nodes.gateway.limits", [{"page_size": 20}, {}], [{"page_size": 0}, {"page_size": "20"}]),
    (
        "nodes.store.write.rpcs.DeleteContact",
        ["delete", "Contact.delete", "Contact.delete_many"],
        ["Contact.remove", "Con tact.delete", "lib.Contact.delete", "Contact."],
    ),
]
CASES = [
    (path, value, ok)
    for path, good, bad in AGREEMENT
    for ok, values in ((True, good), (False, bad))
    for value in values
]


@pytest.fixture(scope="module")
def shipped_data() -> dict:
    return parse_yaml(SHIPPED.read_text(encoding="utf-8")).data


def with_value(data: dict, path: str, value: Any) -> dict:
    data = copy.deepcopy(data)
    *parents, key = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    if value is DELETE:
        target.pop(key, None)
    else:
        target[key] = value
    return data


@pytest.mark.parametrize("path, value, ok", CASES, ids=[f"{p}={v!r}" for p, v, _ in CASES])
def test_schema_and_spec_agree_value_by_value(validator, shipped_data, path, value, ok):
    data = with_value(shipped_data, path, value)
    problems, errors = spec_problems(data), schema_errors(validator, data)
    assert (not problems) == ok, problems
    assert (not errors) == ok, errors
