"""`cqrs-flow init`'s files: scaffolded projects that validate against their own protos, schema
and plugin, written only into a new or empty directory."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cqrs_flow.cli import main
from cqrs_flow.contracts.check import check_contracts
from cqrs_flow.contracts.sdl import parse_schema
from cqrs_flow.plugins import GatewayPlugin, PluginContext, Rejected, load_plugin_class
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.scaffold import (
    DEFAULT_PORT_BASE,
    ScaffoldError,
    make_project,
    parse_entities,
    parse_entity,
    project_name,
    render,
    write_project,
)
from cqrs_flow.topology import load_topology

BOOK_FIELDS = ["title:String", "year:Int", "rating:Float", "available:Boolean", "tags:[String]"]


@pytest.fixture
def own_plugins(monkeypatch):
    """Each scaffolded project has a `plugins` package of its own; keep it and the repository's
    (imported by other tests) apart, and sys.path as it was."""
    monkeypatch.setattr(sys, "path", list(sys.path))

    def ours() -> list[str]:
        return [name for name in sys.modules if name == "plugins" or name.startswith("plugins.")]

    saved = {name: sys.modules.pop(name) for name in ours()}
    importlib.invalidate_caches()
    yield
    for name in ours():
        del sys.modules[name]
    sys.modules.update(saved)


def scaffold(
    directory: Path, entity: str = "Book", fields=BOOK_FIELDS, port_base: int = DEFAULT_PORT_BASE
) -> Path:
    project = make_project(
        project_name(directory), parse_entities(["--entity", entity, *fields]), port_base
    )
    write_project(directory, render(project))
    return directory / "topology.yaml"


# -- the files --------------------------------------------------------------------------------


def test_the_files_of_a_project():
    files = render(
        make_project("bookshop", parse_entities(["--entity", "Book", *BOOK_FIELDS]), 20000)
    )
    assert sorted(files) == [
        "README.md",
        "plugins/__init__.py",
        "plugins/bookshop.py",
        "proto/bookshop.proto",
        "schema/bookshop.graphql",
        "topology.yaml",
    ]
    topology = yaml.safe_load(files["topology.yaml"])
    assert topology["commands"] == {
        "add_book": {"topic": "BOOKSHOP/BOOK/ADD", "rpc": "AddBook"},
        "update_book": {"topic": "BOOKSHOP/BOOK/UPDATE", "rpc": "UpdateBook"},
        "delete_book": {"topic": "BOOKSHOP/BOOK/DELETE", "rpc": "DeleteBook"},
    }
    nodes = topology["nodes"]
    assert [
        nodes["broker"]["listen"],
        nodes["store"]["write"]["listen"],
        nodes["store"]["read"]["listen"],
        nodes["reader"]["listen"],
        nodes["gateway"]["listen"],
    ] == [
        "127.0.0.1:20883",
        "127.0.0.1:20051",
        "127.0.0.1:20052",
        "127.0.0.1:20053",
        "127.0.0.1:20080",
    ]
    assert nodes["writer"]["delay"] == "1s"
    assert nodes["gateway"]["plugins"] == [
        {"use": "plugins.bookshop.BookRules", "config": {"required": ["title"]}}
    ]
    assert "  repeated string tags = 6;\n  string updated_at = 7;" in files["proto/bookshop.proto"]
    assert (
        "  int32 year = 3;\n  double rating = 4;\n  bool available = 5;"
        in files["proto/bookshop.proto"]
    )
    schema = files["schema/bookshop.graphql"]
    assert (
        "  book(id: String!): Book\n" in schema and "  listBooks(count: Int!): [Book!]!\n" in schema
    )
    assert "  deleteBook(id: String!): RequestResponse!\n" in schema
    assert (
        "  updateBook(\n    id: String!\n    title: String!\n" in schema
    )  # long: one argument a line
    compile(files["plugins/bookshop.py"], "bookshop.py", "exec")
    assert "cqrs-flow up topology.yaml" in files["README.md"]
    assert (
        'addBook(title: "title 1", year: 41, rating: 3.5, available: true, '
        'tags: ["tags 1", "tags 1b"])' in files["README.md"]
    )


def test_a_short_mutation_stays_on_one_line():
    schema = render(make_project("notes", [parse_entity("Note", ["text:String"])]))[
        "schema/notes.graphql"
    ]
    assert "  addNote(text: String!): RequestResponse!\n" in schema
    assert "  updateNote(id: String!, text: String!): RequestResponse!\n" in schema


@pytest.mark.parametrize(
    "directory, entity, fields",
    [
        ("bookshop", "Book", BOOK_FIELDS),
        (
            "reviews",
            "BookReview",
            [
                "headline:String",
                "authorIds:[ID]",
                "stars:Int",
                "weights:[Float]",
                "flags:[Boolean]",
            ],
        ),
        ("sensors", "Sensor", ["online:Boolean"]),  # no text field: the plugin stub checks nothing
        ("shop", "Category", ["code:ID", "parent_code:ID", "counts:[Int]"]),
        # words YAML reads as null or booleans, and keywords of Python and protobuf, stay names
        (
            "null",
            "On",
            ["off:String", "true:Boolean", "from:Int", "message:String", "package:String"],
        ),
    ],
)
def test_a_scaffolded_project_validates(
    tmp_path, proto_cache, own_plugins, directory, entity, fields
):
    topology = load_topology(scaffold(tmp_path / directory, entity, fields))
    assert topology.name == directory
    assert (
        list(topology.nodes["gateway"].plugins[0].config["required"])
        == [f.partition(":")[0] for f in fields if f.endswith(":String")][:1]
    )
    protos = compile_protos(list(topology.protos), topology.root)
    assert check_contracts(topology, protos) == []
    assert list((proto_cache / "protos").glob("*.pb"))


def test_the_plugin_stub_trims_and_refuses_a_blank_first_text_field(
    tmp_path, proto_cache, own_plugins, caplog
):
    topology = load_topology(scaffold(tmp_path / "bookshop"))
    protos = compile_protos(list(topology.protos), topology.root)
    gateway = topology.nodes["gateway"]
    ref = gateway.plugins[0]
    cls = load_plugin_class(ref, gateway, topology)
    assert issubclass(cls, GatewayPlugin) and cls.__name__ == "BookRules"
    assert Path(sys.modules[cls.__module__].__file__).is_relative_to(tmp_path)
    plugin = cls(
        PluginContext(topology, gateway, protos, logging.getLogger("test.gateway")), ref.config
    )

    async def run():
        with caplog.at_level(logging.INFO, logger="test.gateway"):
            await plugin.start()
        add = protos.message_class("bookshop.AddBookRequest")()
        add.book.title = "  Dune  "
        await plugin.before_publish("addBook", add, {})
        assert add.book.title == "Dune"
        add.book.title = " \t"
        with pytest.raises(Rejected, match=r"^title must not be empty$"):
            await plugin.before_publish("addBook", add, {})
        await plugin.before_publish(
            "deleteBook", protos.message_class("bookshop.DeleteBookRequest")(id="x"), {}
        )

    asyncio.run(run())
    assert "BookRules loaded; required fields: title" in caplog.text


# -- several entities -------------------------------------------------------------------------

LIBRARY = [
    "--entity",
    "Author",
    "name:String",
    "--entity",
    "Book",
    "title:String",
    "author:Author",
    "year:Int",
    "--entity",
    "Loan",
    "book:Book",
    "member:String",
    "due:String",
]


def library_files(port_base: int = DEFAULT_PORT_BASE) -> dict[str, str]:
    return render(make_project("library", parse_entities(LIBRARY), port_base))


def test_the_topology_of_several_entities():
    topology = yaml.safe_load(library_files()["topology.yaml"])
    assert topology["entities"]["Book"] == {
        "document": "library.Book",
        "collection": "books",
        "key": "id",
        "timestamp": "updated_at",
        "indexes": ["title", "author_id", "year"],
        "relations": {
            "author": {"entity": "Author", "key": "author_id"},
            "loans": {"entity": "Loan", "by": "book_id"},
        },
    }
    assert topology["entities"]["Author"]["relations"] == {
        "books": {"entity": "Book", "by": "author_id"}
    }
    assert topology["entities"]["Loan"]["indexes"] == ["book_id", "member", "due"]
    assert topology["commands"]["remove_book"] == {
        "topic": "LIBRARY/BOOK/REMOVE",
        "rpc": "RemoveBook",
    }
    nodes = topology["nodes"]
    assert nodes["store"]["entities"] == ["Author", "Book", "Loan"]
    assert nodes["store"]["write"]["rpcs"]["RemoveBook"] == "Book.delete"
    assert nodes["store"]["read"]["rpcs"] == {
        "GetAuthor": "get",
        "GetBook": "get",
        "GetLoan": "get",
    }
    assert nodes["reader"]["service"] == "library.Reader"
    assert len(nodes["writer"]["commands"]) == 9
    gateway = nodes["gateway"]
    assert gateway["queries"]["books"] == {"list": "Book"}
    assert gateway["queries"]["book"] == {"get": "Book"}
    assert gateway["mutations"]["removeLoan"] == {
        "command": "remove_loan",
        "exists": "Loan",
        "message": "Queued to remove",
        "not_found": "loan {id} not found",
    }
    assert gateway["mutations"]["addBook"]["generate"] == {"book.id": "uuid"}
    assert gateway["plugins"] == [
        {
            "use": "plugins.library.LibraryRules",
            "config": {"required": ["author.name", "book.title", "loan.member"]},
        }
    ]


def test_a_reference_is_a_string_key_field_in_the_proto():
    proto = library_files()["proto/library.proto"]
    assert (
        "message Book {\n  string id = 1;\n  string title = 2;\n"
        "  string author_id = 3;  // the id of its Author (Book.author)\n  int32 year = 4;\n"
        "  string updated_at = 5;" in proto
    )
    assert "message RemoveBookRequest { string id = 1; string command_id = 15; }" in proto
    assert "  rpc GetLoan(GetLoanRequest) returns (GetLoanResponse);" in proto


def test_the_schema_spells_out_connections_orders_and_filters():
    schema = library_files()["schema/library.graphql"]
    for block in (
        "type PageInfo {\n  hasNextPage: Boolean!\n  hasPreviousPage: Boolean!\n"
        "  startCursor: String\n  endCursor: String\n}",
        "type BookEdge {\n  cursor: String!\n  node: Book!\n}",
        "type BookConnection {\n  edges: [BookEdge!]!\n  nodes: [Book!]!\n  pageInfo: PageInfo!\n"
        '  "How many books match where, on every page."\n  totalCount: Int!\n}',
        "enum OrderDirection {\n  ASC\n  DESC\n}",
        "enum BookOrderField {\n  id\n  title\n  author_id\n  year\n}",
        "input BookOrder {\n  field: BookOrderField!\n  direction: OrderDirection = ASC\n}",
        "input BookWhere {\n  id: StringFilter\n  title: StringFilter\n"
        "  author_id: StringFilter\n  year: IntFilter\n}",
        "input StringFilter {\n  eq: String\n  in: [String!]\n  gt: String\n  gte: String\n"
        "  lt: String\n  lte: String\n  prefix: String\n}",
        "input IntFilter {\n  eq: Int\n  in: [Int!]\n  gt: Int\n  gte: Int\n  lt: Int\n"
        "  lte: Int\n}",
        "input BooleanFilter {\n  eq: Boolean\n}",
        '  "The author whose id is its author_id."\n  author: Author\n',
        "  loans(\n    first: Int\n    after: String\n    last: Int\n    before: String\n"
        "    where: LoanWhere\n    orderBy: LoanOrder\n  ): LoanConnection!\n",
        "  book(id: String!): Book\n",
        "  addBook(title: String!, author_id: String!, year: Int!): RequestResponse!\n",
        "  removeBook(id: String!): RequestResponse!\n",
    ):
        assert block in schema, block
    parsed = parse_schema(schema)
    assert list(parsed.queries["books"].arguments) == [
        "first",
        "after",
        "last",
        "before",
        "where",
        "orderBy",
    ]
    assert parsed.queries["books"].returns.text == "BookConnection!"
    assert set(parsed.object_fields["Book"]) == {
        "id",
        "title",
        "author_id",
        "year",
        "updated_at",
        "author",
        "loans",
    }


SEVERAL = pytest.mark.parametrize(
    "tokens",
    [LIBRARY, ["--entity", "Employee", "name:String", "manager:Employee", "grade:Int"]],
    ids=["library", "staff"],
)


@SEVERAL
def test_a_project_of_several_entities_fits_its_protos(tmp_path, proto_cache, own_plugins, tokens):
    write_project(tmp_path / "p", render(make_project("p", parse_entities(tokens))))
    topology = load_topology(tmp_path / "p" / "topology.yaml")
    problems = check_contracts(topology, compile_protos(list(topology.protos), topology.root))
    assert [p for p in problems if not p.path.startswith("nodes.gateway")] == []


@SEVERAL
def test_a_project_of_several_entities_validates(tmp_path, proto_cache, own_plugins, tokens):
    write_project(tmp_path / "p", render(make_project("p", parse_entities(tokens))))
    topology = load_topology(tmp_path / "p" / "topology.yaml")
    assert check_contracts(topology, compile_protos(list(topology.protos), topology.root)) == []


def test_the_plugin_stub_of_several_entities_guards_each_first_text_field(
    tmp_path, proto_cache, own_plugins
):
    write_project(tmp_path / "library", library_files())
    topology = load_topology(tmp_path / "library" / "topology.yaml")
    protos = compile_protos(list(topology.protos), topology.root)
    gateway = topology.nodes["gateway"]
    ref = gateway.plugins[0]
    cls = load_plugin_class(ref, gateway, topology)
    plugin = cls(
        PluginContext(topology, gateway, protos, logging.getLogger("test.gateway")), ref.config
    )

    async def run():
        await plugin.start()
        book = protos.message_class("library.AddBookRequest")()
        book.book.title = "  Dune "
        await plugin.before_publish("addBook", book, {})
        assert book.book.title == "Dune"
        loan = protos.message_class("library.AddLoanRequest")()
        loan.loan.member = " "
        with pytest.raises(Rejected, match=r"^member must not be empty$"):
            await plugin.before_publish("addLoan", loan, {})
        await plugin.before_publish(
            "removeBook", protos.message_class("library.RemoveBookRequest")(id="x"), {}
        )

    asyncio.run(run())


def test_init_writes_a_project_of_several_entities(tmp_path):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "library"), *LIBRARY])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "library" / "topology.yaml").read_text() == library_files()["topology.yaml"]


# -- writing ----------------------------------------------------------------------------------


def test_an_existing_empty_directory_is_used(tmp_path):
    (tmp_path / "shop").mkdir()
    written = write_project(tmp_path / "shop", {"a/b.txt": "x"})
    assert written == [tmp_path / "shop" / "a" / "b.txt"] and written[0].read_text() == "x"


def test_a_directory_with_anything_in_it_is_left_alone(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / ".keep").write_text("")
    with pytest.raises(
        ScaffoldError, match="is not empty; init writes only into a new or empty directory"
    ):
        write_project(tmp_path / "shop", {"topology.yaml": "x"})
    assert [p.name for p in (tmp_path / "shop").iterdir()] == [".keep"]


def test_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "shop").write_text("mine")
    with pytest.raises(ScaffoldError, match="exists and is not a directory; nothing was written"):
        write_project(tmp_path / "shop", {"topology.yaml": "x"})
    assert (tmp_path / "shop").read_text() == "mine"


# -- the command ------------------------------------------------------------------------------


def test_init_writes_a_project_that_validates(tmp_path, proto_cache, own_plugins):
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "init",
            str(tmp_path / "bookshop"),
            "--entity",
            "Book",
            *BOOK_FIELDS,
            "--port-base",
            "21000",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"created {tmp_path / 'bookshop' / 'topology.yaml'}" in result.output
    assert f"cqrs-flow up {tmp_path / 'bookshop' / 'topology.yaml'}" in result.output
    assert "http://127.0.0.1:21080/graphql" in result.output
    validated = runner.invoke(main, ["validate", str(tmp_path / "bookshop" / "topology.yaml")])
    assert validated.exit_code == 0, validated.output
    assert "valid — 5 nodes, 3 commands" in validated.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--entity", "Book", "title:Text"],
            "Invalid value for '--entity': unknown type 'Text' of field 'title'",
        ),
        (
            ["--entity", "Book", "author:Author", "--entity", "Author", "book:Book"],
            "Invalid value for '--entity': Book and Author refer to each other",
        ),
        (
            ["--entity", "Book", "title:String", "author:Autor", "--entity", "Author", "n:Int"],
            "unknown type 'Autor' of field 'author' of Book; did you mean Author?",
        ),
        (
            ["--entity", "Book", "title:String", "--prot-base", "1"],
            "No such option '--prot-base'. Did you mean '--port-base'?",
        ),
        (
            ["--entity", "Book", "title:String", "--port-base", "80"],
            "Invalid value for '--port-base'",
        ),
        ([], "describe the entity"),
    ],
)
def test_init_refuses_bad_input_and_writes_nothing(tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "shop"), *arguments])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())  # click wraps long messages
    assert not (tmp_path / "shop").exists()


def test_init_refuses_a_directory_that_is_not_empty(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(
        main, ["init", str(tmp_path / "shop"), "--entity", "Book", "title:String"]
    )
    assert result.exit_code == 2
    assert "Invalid value for 'DIR'" in result.output and "is not empty" in result.output
    assert [p.name for p in (tmp_path / "shop").iterdir()] == ["notes.txt"]


def test_init_wants_dir_first():
    result = CliRunner().invoke(main, ["init", "--entity", "Book", "title:String", "shop"])
    assert result.exit_code == 2 and "DIR comes first" in result.output
