"""`cqrs-flow init`'s description of a project: parsing entities and fields, refusing bad ones
with what to write instead, and naming the project."""

from __future__ import annotations

import pytest

from cqrs_flow.scaffold import (
    Entity,
    Field,
    ScaffoldError,
    UnknownOption,
    make_project,
    parse_entities,
    parse_entity,
    parse_field,
    project_name,
)

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
