"""conversions: data_converter gives exactly what to_data gives, from_document what ParseDict
gives, for every kind of field."""

from __future__ import annotations

import pytest

from cqrs_flow.protobuf.compiler import ProtoSet, compile_protos
from cqrs_flow.protobuf.conversions import data_converter, from_document
from cqrs_flow.protobuf.messages import to_data

KINDS_PROTO = """
syntax = "proto3";
package kinds;
import "google/protobuf/timestamp.proto";

enum Colour { COLOUR_UNSET = 0; RED = 1; GREEN = 2; }
message Inner { string label = 1; repeated int32 marks = 2; Colour colour = 3; }
message Plain {
  string name = 1;
  bool active = 2;
  int32 small = 3;
  uint32 count = 4;
  sint32 delta = 5;
  fixed32 mask = 6;
  sfixed32 offset = 7;
  double score = 8;
  Colour colour = 9;
  repeated Colour colours = 10;
  repeated string tags = 11;
  repeated double weights = 12;
  Inner inner = 13;
  repeated Inner inners = 14;
  optional string nickname = 15;
  optional int32 rank = 16;
  oneof choice { string word = 17; int32 number = 18; Inner thing = 19; }
}
message Tree { string name = 1; repeated Tree children = 2; }
message Wide {
  string name = 1;
  int64 big = 2;
  uint64 huge = 3;
  bytes blob = 4;
  float ratio = 5;
  map<string, int32> counts = 6;
  google.protobuf.Timestamp at = 7;
}
message HasWide { Wide wide = 1; }
"""


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> ProtoSet:
    root = tmp_path_factory.mktemp("kinds")
    (root / "kinds.proto").write_text(KINDS_PROTO)
    return compile_protos([root / "kinds.proto"], root, cache=root / "cache")


def same(message) -> dict:
    converted = data_converter(message.DESCRIPTOR)(message)
    assert converted == to_data(message)
    return converted


def test_every_plain_kind_of_field(kinds):
    Plain = kinds.message_class("kinds.Plain")
    assert same(Plain()) == {
        "name": "",
        "active": False,
        "small": 0,
        "count": 0,
        "delta": 0,
        "mask": 0,
        "offset": 0,
        "score": 0.0,
        "colour": "COLOUR_UNSET",
        "colours": [],
        "tags": [],
        "inners": [],
        "weights": [],
    }
    full = Plain(
        name="Ada",
        active=True,
        small=-3,
        count=4_000_000_000,
        delta=-7,
        mask=2**32 - 1,
        offset=-9,
        score=2.5,
        colour=2,
        colours=[1, 0, 2],
        tags=["a", "b"],
        weights=[0.5, float("nan")],
        inner={"label": "x", "marks": [1, 2], "colour": 1},
        nickname="",
        rank=0,
        word="hi",
    )
    full.inners.add(label="y")
    found = same(full)
    assert found["inner"] == {"label": "x", "marks": [1, 2], "colour": "RED"}
    assert found["inners"] == [{"label": "y", "marks": [], "colour": "COLOUR_UNSET"}]
    assert found["nickname"] == "" and found["rank"] == 0  # set to their defaults: still there
    assert found["word"] == "hi" and "number" not in found and "thing" not in found


@pytest.mark.parametrize("score", [float("inf"), float("-inf"), float("nan"), -0.0, 1e308])
def test_doubles_as_json_format_writes_them(kinds, score):
    same(kinds.message_class("kinds.Plain")(score=score, weights=[score]))


def test_an_enum_number_without_a_name_stays_a_number(kinds):
    assert same(kinds.message_class("kinds.Plain")(colour=7))["colour"] == 7


def test_a_oneof_message_member(kinds):
    message = kinds.message_class("kinds.Plain")(number=0)
    assert same(message)["number"] == 0
    message.thing.label = "t"
    assert same(message)["thing"]["label"] == "t" and "number" not in same(message)


@pytest.mark.parametrize("name", ["kinds.Wide", "kinds.HasWide", "kinds.Tree"])
def test_other_types_are_converted_by_to_data_itself(kinds, name):
    assert data_converter(kinds.message_descriptor(name)) is to_data


def test_types_to_data_handles_still_convert_the_same(kinds):
    wide = kinds.message_class("kinds.Wide")(
        name="w", big=-(2**60), huge=2**64 - 1, blob=b"\x00\xff", ratio=0.1, counts={"a": 1}
    )
    wide.at.seconds = 10
    same(wide)
    tree = kinds.message_class("kinds.Tree")(name="root")
    tree.children.add(name="leaf")
    same(tree)


def test_the_shipped_contact(shipped_protos):
    contact = shipped_protos.message_class("contacts.Contact")(
        id="1", name="Ada", last_updated="2026-01-01T00:00:00Z"
    )
    assert same(contact) == {"id": "1", "name": "Ada", "last_updated": "2026-01-01T00:00:00Z"}


# -- from_document: what ParseDict(ignore_unknown_fields=True) gives ----------------------------


def parsed(document: dict, cls):
    """from_document's message, checked against json_format's (or its error against
    json_format's)."""
    from google.protobuf import json_format

    try:
        expected = json_format.ParseDict(document, cls(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        with pytest.raises(json_format.ParseError, match=str(exc).split(":")[0]):
            from_document(document, cls)
        return None
    found = from_document(document, cls)
    assert found == expected
    assert found.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    assert [f.name for f, _ in found.ListFields()] == [f.name for f, _ in expected.ListFields()]
    return found


def test_documents_as_to_document_writes_them(kinds, monkeypatch):
    from google.protobuf import json_format

    Plain = kinds.message_class("kinds.Plain")
    full = Plain(
        name="Ada",
        active=True,
        small=-3,
        count=4_000_000_000,
        delta=-7,
        mask=2**32 - 1,
        offset=-9,
        score=2.5,
        colour=2,
        colours=[1, 0, 2],
        tags=["a", "b"],
        weights=[0.5, float("inf")],
        inner={"label": "x", "marks": [1, 2], "colour": 1},
        nickname="",
        rank=0,
        thing={"label": "t"},
    )
    full.inners.add(label="y")
    for message in (full, Plain(), Plain(word="w"), Plain(number=0)):
        assert parsed({**to_data(message), "_id": "ignored"}, Plain) == message
    # and they are read directly, not through json_format (but for NaN and infinities, as strings)
    full.weights[1] = -1.5
    monkeypatch.setattr(json_format, "ParseDict", None)
    assert from_document(to_data(full), Plain) == full


@pytest.mark.parametrize(
    "document",
    [
        {"name": 5},  # wrong types: ParseDict's error
        {"active": "yes"},
        {"small": 2**40},  # out of range
        {"colour": "PURPLE"},  # an enum name it does not know: ignored
        {"colour": 2, "colours": [1, "GREEN"]},  # enum numbers
        {"score": "NaN", "weights": ["-Infinity", 1]},
        {"small": 3.0, "count": "12"},  # numbers as ParseDict takes them
        {"name": None, "inner": None},  # nulls
        {"lastName": "x", "inner": {"label": "l", "extra": 1}},  # unknown keys, at every level
        {"name": "a", "word": "w", "number": 1},  # two members of one oneof
        {"tags": "not a list"},
        {"inners": [{"label": "a"}, {"marks": [1, 2]}]},
    ],
)
def test_other_documents_give_what_parse_dict_gives(kinds, document):
    parsed(document, kinds.message_class("kinds.Plain"))


def test_a_field_by_its_json_name(kinds, shipped_protos):
    contact = parsed(
        {"id": "1", "lastUpdated": "2026"}, shipped_protos.message_class("contacts.Contact")
    )
    assert contact.last_updated == "2026"


@pytest.mark.parametrize(
    "name, document",
    [
        (
            "kinds.Wide",
            {
                "name": "w",
                "big": "123",
                "huge": 5,
                "blob": "AP8=",
                "ratio": 0.5,
                "counts": {"a": 1},
                "at": "1970-01-01T00:00:10Z",
            },
        ),
        ("kinds.Tree", {"name": "r", "children": [{"name": "c", "children": []}]}),
    ],
)
def test_other_types_go_through_parse_dict(kinds, name, document):
    parsed(document, kinds.message_class(name))


def test_the_shipped_documents(shipped_protos):
    Contact = shipped_protos.message_class("contacts.Contact")
    document = {"_id": "1", "id": "1", "name": "Ada", "last_updated": "2026-01-01T00:00:00.000Z"}
    assert parsed(document, Contact) == Contact(
        id="1", name="Ada", last_updated="2026-01-01T00:00:00.000Z"
    )
