"""Which fields `cqrs-flow init` makes required: asked in a terminal, or named optional with
--optional in a script. A required field is non-null in the GraphQL schema and demanded by the
mutations; an optional one is a proto3 `optional` field (it has presence), nullable in the schema
and free to leave out."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from cqrs_flow.cli import main
from cqrs_flow.contracts.check import check_contracts
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.scaffold import (
    ScaffoldError,
    make_optional,
    make_project,
    parse_entities,
    parse_required,
    render,
)
from cqrs_flow.topology import load_topology

from .test_files import own_plugins  # noqa: F401  (a fixture)

CONTACT = ["--entity", "Contact", "name:String", "nickname:String", "age:Int", "tags:[String]"]


def contact(*optional: str):
    [entity] = make_optional(parse_entities(CONTACT), optional)
    return entity


def required_of(entity) -> dict[str, bool]:
    return {f.name: f.required for f in entity.fields}


# -- the description --------------------------------------------------------------------------


def test_every_field_is_required_unless_named():
    assert required_of(contact()) == dict.fromkeys(["name", "nickname", "age", "tags"], True)
    assert required_of(contact("nickname,age")) == {
        "name": True,
        "nickname": False,
        "age": False,
        "tags": True,
    }
    assert contact("Contact.nickname", "tags").optional == ("nickname", "tags")


def test_a_bare_name_is_the_field_of_every_entity_that_has_it():
    entities = parse_entities(
        ["--entity", "Author", "name:String", "--entity", "Book", "name:String", "year:Int"]
    )
    assert [e.optional for e in make_optional(entities, ["name"])] == [("name",), ("name",)]
    assert [e.optional for e in make_optional(entities, ["Book.name"])] == [(), ("name",)]


@pytest.mark.parametrize(
    "names, message",
    [
        (["nickame"], "no entity has a field 'nickame'; did you mean nickname?"),
        (["Contakt.age"], "there is no entity 'Contakt'; did you mean Contact.age?"),
        (["Contact.agee"], "Contact has no field 'agee'; did you mean age?"),
    ],
)
def test_an_unknown_optional_field_is_refused_with_a_did_you_mean(names, message):
    with pytest.raises(ScaffoldError, match=re.escape(message)):
        make_optional(parse_entities(CONTACT), names)


@pytest.mark.parametrize(
    "answer, optional",
    [
        ("", ()),
        ("all", ()),
        ("ALL", ()),
        ("none", ("name", "nickname", "age", "tags")),
        ("name", ("nickname", "age", "tags")),
        ("name, age tags", ("nickname",)),
    ],
)
def test_the_answer_to_which_fields_are_required(answer, optional):
    assert parse_required(contact(), answer).optional == optional


def test_an_answer_naming_no_field_is_refused():
    with pytest.raises(
        ScaffoldError, match=re.escape("Contact has no field 'nmae'; did you mean name?")
    ):
        parse_required(contact(), "nmae")


# -- what is rendered ---------------------------------------------------------------------------


def test_optional_fields_are_nullable_in_the_schema_and_have_presence_in_the_proto():
    files = render(make_project("crm", [contact("nickname", "age", "tags")]))
    proto, schema = files["proto/crm.proto"], files["schema/crm.graphql"]
    assert "  string name = 2;\n  optional string nickname = 3;\n  optional int32 age = 4;\n" in (
        proto
    )
    assert "  repeated string tags = 5;" in proto  # a list has no presence: empty when not given
    assert "  name: String!\n  nickname: String\n  age: Int\n  tags: [String!]!\n" in schema
    assert "addContact(name: String!, nickname: String, age: Int, tags: [String!])" in schema
    flat = " ".join(schema.split())  # a long mutation is written one argument a line
    assert (
        "updateContact( id: String! name: String! nickname: String age: Int tags: [String!] )"
        in (flat)
    )
    # the plugin stub guards the first required text field only: an optional one may be empty
    assert "required: [name]" in files["topology.yaml"]
    only_optional_text = render(make_project("crm", [contact("name")]))["topology.yaml"]
    assert "required: [nickname]" in only_optional_text


def test_a_project_with_optional_fields_validates(tmp_path, proto_cache, own_plugins):  # noqa: F811
    runner = CliRunner()
    done = runner.invoke(
        main,
        [
            "init",
            str(tmp_path / "library"),
            "--entity",
            "Author",
            "name:String",
            "born:Int",
            "--entity",
            "Book",
            "title:String",
            "author:Author",
            "year:Int",
            "--optional",
            "born,Book.author",
            "--optional",
            "year",
        ],
    )
    assert done.exit_code == 0, done.output
    topology = load_topology(tmp_path / "library" / "topology.yaml")
    assert check_contracts(topology, compile_protos(list(topology.protos), topology.root)) == []
    schema = (tmp_path / "library" / "schema" / "library.graphql").read_text()
    assert "addBook(title: String!, author_id: String, year: Int)" in schema
    assert "  born: Int\n" in schema and "  author_id: String\n" in schema


# -- the command ------------------------------------------------------------------------------


def test_init_with_optional_asks_nothing(tmp_path):
    done = CliRunner().invoke(
        main, ["init", str(tmp_path / "crm"), *CONTACT, "--optional", "nickname"], input=""
    )
    assert done.exit_code == 0, done.output
    assert "Required fields" not in done.output
    schema = (tmp_path / "crm" / "schema" / "crm.graphql").read_text()
    assert "addContact(name: String!, nickname: String, age: Int!, tags: [String!]!)" in schema


def test_init_without_a_terminal_or_optional_keeps_every_field_required(tmp_path):
    done = CliRunner().invoke(main, ["init", str(tmp_path / "crm"), *CONTACT], input="")
    assert done.exit_code == 0, done.output
    assert "Required fields" not in done.output
    schema = (tmp_path / "crm" / "schema" / "crm.graphql").read_text()
    assert "addContact(name: String!, nickname: String!, age: Int!, tags: [String!]!)" in schema


def test_init_asks_which_fields_are_required_and_asks_again_after_a_wrong_answer(tmp_path):
    tokens = [*CONTACT, "--entity", "Note", "text:String", "pinned:Boolean"]
    done = CliRunner().invoke(
        main, ["init", str(tmp_path / "crm"), *tokens, "--ask"], input="name agee\nname age\n\n"
    )
    assert done.exit_code == 0, done.output
    question = "Required fields of Contact (name, nickname, age, tags): all, none, or their names"
    assert done.output.count(f"{question} [all]:") == 2
    assert "Error: Contact has no field 'agee'; did you mean age?" in done.output
    assert "Required fields of Note (text, pinned): all, none, or their names [all]:" in (
        done.output
    )
    schema = (tmp_path / "crm" / "schema" / "crm.graphql").read_text()
    assert "addContact(name: String!, nickname: String, age: Int!, tags: [String!])" in schema
    assert "addNote(text: String!, pinned: Boolean!)" in schema  # the default: all


def test_init_refuses_an_unknown_optional_field_and_writes_nothing(tmp_path):
    done = CliRunner().invoke(main, ["init", str(tmp_path / "crm"), *CONTACT, "--optional", "nick"])
    assert done.exit_code == 2, done.output
    assert "Invalid value for '--optional'" in done.output
    assert "did you mean nickname?" in " ".join(done.output.split())
    assert not (tmp_path / "crm").exists()
