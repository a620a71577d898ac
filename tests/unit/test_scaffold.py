"""`cqrs-flow init`: parsing entity descriptions, refusing bad ones, and scaffolding projects that
validate against their own protos, schema and plugin."""

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
from cqrs_flow.plugins import GatewayPlugin, PluginContext, Rejected, load_plugin_class
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.scaffold import (
    DEFAULT_PORT_BASE,
    Entity,
    Field,
    ScaffoldError,
    UnknownOption,
    make_project,
    parse_entities,
    parse_entity,
    parse_field,
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


# -- fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected, proto, graphql",
    [
        ("title:String", Field("title", "String"), "string", "String!"),
        ("year:Int", Field("year", "Int"), "int32", "Int!"),  # GraphQL Int is 32-bit
        ("rating:Float", Field("rating", "Float"), "double", "Float!"),
        ("available:Boolean", Field("available", "Boolean"), "bool", "Boolean!"),
        ("isbn:ID", Field("isbn", "ID"), "string", "ID!"),
        ("tags:[String]", Field("tags", "String", True), "repeated string", "[String!]!"),
        ("scores:[Int!]!", Field("scores", "Int", True), "repeated int32", "[Int!]!"),
        ("page_count:int", Field("page_count", "Int"), "int32", "Int!"),  # type names in any case
        ("authorIds: [ id ]", Field("authorIds", "ID", True), "repeated string", "[ID!]!"),
        ("subtitle:String!", Field("subtitle", "String"), "string", "String!"),  # non-null anyway
    ],
)
def test_a_field_is_name_colon_type(text, expected, proto, graphql):
    field = parse_field(text)
    assert field == expected and field.proto == proto and field.graphql == graphql


@pytest.mark.parametrize(
    "text, message",
    [
        ("title", "field 'title' of Book is not NAME:TYPE"),
        ("title:", "is not NAME:TYPE"),
        (":String", "is not NAME:TYPE"),
        ("Title:String", "field name 'Title' of Book is not a snake_case or camelCase identifier"),
        ("2nd:String", "is not a snake_case or camelCase identifier"),
        ("page-count:Int", "is not a snake_case or camelCase identifier"),
        ("title:Strng", "unknown type 'Strng' of field 'title' of Book; did you mean String?"),
        (
            "when:Date",
            "unknown type 'Date' of field 'when' of Book (types: String, Int, Float, Boolean, ID",
        ),
        (
            "tags:[[String]]",
            "type '[[String]]' of field 'tags' of Book is not a type or a list of one",
        ),
        ("tags:[String", "is not a type or a list of one"),
        ("tags:String]", "is not a type or a list of one"),
        ("year:Int!!", "is not a type or a list of one"),
    ],
)
def test_a_bad_field_is_refused_with_what_to_write(text, message):
    with pytest.raises(ScaffoldError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_field(text, "Book")


# -- entities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fields, message",
    [
        ("book", ["title:String"], "entity name 'book' is not PascalCase"),
        ("Book_Review", ["title:String"], "is not PascalCase"),
        (
            "Query",
            ["title:String"],
            "entity name 'Query' is taken by the generated schema or protos",
        ),
        ("String", ["title:String"], "is taken"),
        ("RequestResponse", ["title:String"], "is taken"),
        ("Book", [], "entity Book has no fields; give them after its name as NAME:TYPE"),
        (
            "Book",
            ["id:String"],
            "field name 'id' of Book is reserved: every entity has the key 'id: String'",
        ),
        (
            "Book",
            ["updated_at:String"],
            "'updated_at' of Book is reserved: the store sets 'updated_at'",
        ),
        (
            "BookReview",
            ["book_review:String"],
            "'book_review' names the request field that carries a BookReview",
        ),
        ("Book", ["title:String", "title:Int"], "field 'title' of Book is given twice"),
        (
            "Book",
            ["page_count:Int", "pageCount:Int"],
            "fields 'page_count' and 'pageCount' of Book differ only in '_' and case",
        ),
        ("Book", ["updatedAt:String"], "fields 'updated_at' and 'updatedAt' of Book"),
    ],
)
def test_a_bad_entity_is_refused(name, fields, message):
    with pytest.raises(ScaffoldError, match=message):
        parse_entity(name, fields)


@pytest.mark.parametrize(
    "name, camel, snake, plural, plural_snake",
    [
        ("Book", "book", "book", "Books", "books"),
        ("BookReview", "bookReview", "book_review", "BookReviews", "book_reviews"),
        ("ISBNRecord", "isbnRecord", "isbn_record", "ISBNRecords", "isbn_records"),
        ("Category", "category", "category", "Categories", "categories"),
        ("Day", "day", "day", "Days", "days"),
        ("Box", "box", "box", "Boxes", "boxes"),
        ("Address", "address", "address", "Addresses", "addresses"),
        ("Url", "url", "url", "Urls", "urls"),
    ],
)
def test_entity_names_in_every_case(name, camel, snake, plural, plural_snake):
    entity = Entity(name, (Field("x", "String"),))
    assert (entity.camel, entity.snake, entity.plural, entity.plural_snake) == (
        camel,
        snake,
        plural,
        plural_snake,
    )


def test_fields_follow_their_entity():
    entities = parse_entities(
        ["--entity", "Book", "title:String", "--entity=Author", "name:String", "born:Int"]
    )
    assert [(e.name, [f.name for f in e.fields]) for e in entities] == [
        ("Book", ["title"]),
        ("Author", ["name", "born"]),
    ]


@pytest.mark.parametrize(
    "tokens, message",
    [
        ([], "describe the entity: --entity NAME FIELD:TYPE"),
        (["title:String"], "'title:String' comes before any --entity"),
        (["--entity"], "--entity needs a name"),
        (["--entity", "--port-base"], "--entity needs a name"),
    ],
)
def test_bad_entity_options(tokens, message):
    with pytest.raises(ScaffoldError, match=message):
        parse_entities(tokens)


def test_an_unknown_option_is_named():
    with pytest.raises(UnknownOption) as exc:
        parse_entities(["--entity", "Book", "title:String", "--prot-base=1"])
    assert exc.value.option == "--prot-base"


def test_a_second_entity_is_refused_with_the_reason():
    entities = parse_entities(
        ["--entity", "Book", "title:String", "--entity", "Author", "name:String"]
    )
    with pytest.raises(ScaffoldError) as exc:
        make_project("shop", entities)
    message = str(exc.value)
    assert "one entity per project, not 2 (Book, Author)" in message
    assert "a gateway sends every query to one reader, a reader reads from one store" in message
    assert "Author would need a store, reader and gateway" in message


@pytest.mark.parametrize("port_base", [1023, 64653])
def test_the_port_base_keeps_every_port_in_range(port_base):
    with pytest.raises(ScaffoldError, match=f"port base {port_base} is out of range"):
        make_project("shop", [parse_entity("Book", ["title:String"])], port_base)


# -- project names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "directory, expected",
    [
        ("bookshop", "bookshop"),
        ("/somewhere/My Shop-2", "my_shop_2"),
        ("projects/bookshop/", "bookshop"),
        ("2024-shop", "project_2024_shop"),
        ("import", "import_project"),
        ("Bücher", "bucher"),
    ],
)
def test_the_project_is_named_after_its_directory(directory, expected):
    assert project_name(directory) == expected


def test_a_directory_name_with_nothing_usable_asks_for_a_name():
    with pytest.raises(ScaffoldError, match="give one with --name"):
        project_name("---")


@pytest.mark.parametrize(
    "name, ok",
    [
        ("shop", True),
        ("my_shop2", True),
        ("Shop", False),
        ("my-shop", False),
        ("class", False),
        ("_shop", False),
    ],
)
def test_an_explicit_project_name_must_be_an_identifier(name, ok):
    if ok:
        assert project_name("anything", name) == name
    else:
        with pytest.raises(ScaffoldError, match="is not a lower-case identifier"):
            project_name("anything", name)


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
        'addBook(title: "title 1", year: 41, rating: 3.5, available: true, tags: ["tags 1", "tags 1b"])'
        in files["README.md"]
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
        with pytest.raises(Rejected, match="^title must not be empty$"):
            await plugin.before_publish("addBook", add, {})
        await plugin.before_publish(
            "deleteBook", protos.message_class("bookshop.DeleteBookRequest")(id="x"), {}
        )

    asyncio.run(run())
    assert "BookRules loaded; required fields: title" in caplog.text


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
            ["--entity", "Book", "title:String", "--entity", "Author", "name:String"],
            "init scaffolds one entity per project, not 2 (Book, Author)",
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
