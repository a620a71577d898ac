"""The files `cqrs-flow init` writes, byte for byte, for three projects of one entity: one with a
text and a number field (bookshop), one with neither (sensors), and one whose long names make the
schema put one argument a line and the README wrap (stockroom); one whose fields are partly
optional (crm: `--optional nickname,age`); and for one of several entities that refer to each
other (library). The golden files of the first three are what init wrote
before its templates became files; a change to a template shows here as a diff.

To accept an intended change, run this file: `python tests/unit/scaffold/test_golden.py`
rewrites golden/ from the templates; review the diff before committing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_flow.scaffold import make_optional, make_project, parse_entities, render

GOLDEN = Path(__file__).parent / "golden"

# project -> (port base, --entity arguments)
CASES = {
    "bookshop": (
        18000,
        ["Book", "title:String", "year:Int", "rating:Float", "available:Boolean", "tags:[String]"],
    ),
    "sensors": (18000, ["Sensor", "online:Boolean", "labels:[String]"]),
    "crm": (
        18000,
        ["Contact", "name:String", "nickname:String", "age:Int", "tags:[String]"],
    ),
    "stockroom": (
        24000,
        [
            "WarehouseStockReservationRecord",
            "quantity_reserved:Float",
            "warehouse_codes:[ID]",
            "confirmed:Boolean",
            "counts:[Int]",
        ],
    ),
    "library": (
        18000,
        ["Author", "name:String", "--entity", "Book", "title:String", "author:Author"]
        + ["year:Int", "--entity", "Loan", "book:Book", "member:String", "due:String"],
    ),
}


OPTIONAL = {"crm": ["nickname,age"]}  # project -> --optional


def rendered(name: str) -> dict[str, str]:
    port_base, tokens = CASES[name]
    entities = make_optional(parse_entities(["--entity", *tokens]), OPTIONAL.get(name, []))
    return render(make_project(name, entities, port_base))


def golden(name: str) -> dict[str, str]:
    root = GOLDEN / name
    return {
        path.relative_to(root).as_posix(): path.read_bytes().decode("utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_init_writes_the_golden_files(name):
    files, expected = rendered(name), golden(name)
    assert sorted(files) == sorted(expected)
    for relative, text in files.items():
        assert text == expected[relative], f"{relative} differs from golden/{name}/{relative}"


if __name__ == "__main__":
    for name in CASES:
        for relative, text in rendered(name).items():
            path = GOLDEN / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        print(f"wrote {GOLDEN / name}")
