"""messages: data_converter gives exactly what to_data gives, for every kind of field."""

from __future__ import annotations

import pytest

from cqrs_flow.messages import data_converter, to_data
from cqrs_flow.protos import ProtoSet, compile_protos

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
    assert same(Plain()) == {"name": "", "active": False, "small": 0, "count": 0, "delta": 0, "mask": 0,
                             "offset": 0, "score": 0.0, "colour": "COLOUR_UNSET", "colours": [], "tags": [], "inners": [],
                             "weights": []}
    full = Plain(name="Ada", active=True, small=-3, count=4_000_000_000, delta=-7, mask=2**32 - 1, offset=-9,
                 score=2.5, colour=2, colours=[1, 0, 2], tags=["a", "b"], weights=[0.5, float("nan")],
                 inner={"label": "x", "marks": [1, 2], "colour": 1}, nickname="", rank=0, word="hi")
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
    wide = kinds.message_class("kinds.Wide")(name="w", big=-(2**60), huge=2**64 - 1, blob=b"\x00\xff", ratio=0.1,
                                             counts={"a": 1})
    wide.at.seconds = 10
    same(wide)
    tree = kinds.message_class("kinds.Tree")(name="root")
    tree.children.add(name="leaf")
    same(tree)


def test_the_shipped_contact(shipped_protos):
    contact = shipped_protos.message_class("contacts.Contact")(id="1", name="Ada", last_updated="2026-01-01T00:00:00Z")
    assert same(contact) == {"id": "1", "name": "Ada", "last_updated": "2026-01-01T00:00:00Z"}
