"""`cqrs-flow init`'s description of a project: parsing entities and fields, refusing bad ones
with what to write instead, and naming the project."""

from __future__ import annotations

import pytest

from cqrs_flow.scaffold import (
    Entity,
    Field,
    Relation,
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


# -- several entities and references ----------------------------------------------------------

LIBRARY = [
    "--entity",
    "Author",
    "name:String",
    "--entity",
    "Book",
    "title:String",
    "author:Author",
    "--entity",
    "Loan",
    "book:Book",
    "member:String",
    "due:String",
]


@pytest.mark.parametrize(
    "text, expected, stored",
    [
        ("author:Author", Field("author", "String", refers="Author"), "author_id"),
        ("main_author:Author", Field("main_author", "String", refers="Author"), "main_author_id"),
        ("mainAuthor:Author", Field("mainAuthor", "String", refers="Author"), "mainAuthorId"),
        ("manager:Book", Field("manager", "String", refers="Book"), "manager_id"),  # itself
        ("title:String", Field("title", "String"), "title"),
    ],
)
def test_a_field_typed_by_an_entity_refers_to_it(text, expected, stored):
    field = parse_field(text, "Book", ["Author", "Book"])
    assert field == expected and field.stored == stored
    assert field.proto == "string" and field.graphql == "String!"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "author:Autor",
            "unknown type 'Autor' of field 'author' of Book; did you mean Author? (types: "
            "String, Int, Float, Boolean, ID, or a list of one such as [String], or an entity: "
            "Author, Book)",
        ),
        (
            "authors:[Author]",
            "field 'authors' of Book is a list of Author: a reference leads to one. To relate "
            "a Book to many Authors, give Author the reference instead (book:Book): Book then "
            "gets the list (Book.authors)",
        ),
        (
            "author_id:Author",
            "field 'author_id' of Book refers to Author: name it after what it leads to, "
            "author:Author; init adds the field holding the key (author_id)",
        ),
        ("writerId:Author", "name it after what it leads to, writer:Author"),
    ],
)
def test_a_bad_reference_is_refused_with_what_to_write(text, message):
    with pytest.raises(ScaffoldError) as exc:
        parse_field(text, "Book", ["Author", "Book"])
    assert message in str(exc.value)


def test_a_reference_s_key_field_may_not_take_another_field_s_name():
    with pytest.raises(
        ScaffoldError,
        match=r"field 'author_id' of Book has the name of the field holding the key of "
        r"author:Author \(author_id\); rename one",
    ):
        parse_entity("Book", ["author:Author", "author_id:String"], ["Author", "Book"])
    with pytest.raises(ScaffoldError, match=r"'authorId' .* differ only in '_' and case"):
        parse_entity("Book", ["author:Author", "authorId:String"], ["Author", "Book"])


def test_entities_refer_to_each_other_in_any_order():
    entities = parse_entities(["--entity", "Book", "author:Author", "--entity", "Author", "n:Int"])
    assert entities[0].fields == (Field("author", "String", refers="Author"),)
    assert entities[0].indexes == ("author_id",)


def test_every_single_valued_field_is_indexed():
    book = parse_entity(
        "Book", ["title:String", "tags:[String]", "year:Int", "author:Author"], ["Author"]
    )
    assert book.indexes == ("title", "year", "author_id")


@pytest.mark.parametrize(
    "tokens, message",
    [
        (
            ["--entity", "Author", "favourite:Book", "--entity", "Book", "author:Author"],
            "Author and Book refer to each other (Author.favourite:Book, Book.author:Author): "
            "none of them could be added with its reference set before the other exists. Drop "
            "one of these fields: its relation comes the other way anyway, as a list "
            "(favourite:Book in Author gives Book.authors). An entity may refer to itself "
            "(Employee manager:Employee)",
        ),
        (
            ["--entity", "Shelf", "room:Room", "--entity", "Room", "floor:Floor"]
            + ["--entity", "Floor", "shelf:Shelf", "n:Int"],
            "Shelf, Room and Floor refer to one another in a circle (Shelf.room:Room, "
            "Room.floor:Floor, Floor.shelf:Shelf): none of them could be added with its "
            "reference set before the others exist.",
        ),
        (
            ["--entity", "Book", "t:String", "--entity", "Book", "u:String"],
            "entity Book is given twice",
        ),
    ],
)
def test_references_that_come_round_in_a_circle_are_refused(tokens, message):
    with pytest.raises(ScaffoldError) as exc:
        parse_entities(tokens)
    assert message in str(exc.value)


def test_an_entity_may_refer_to_itself():
    (employee,) = parse_entities(["--entity", "Employee", "name:String", "manager:Employee"])
    project = make_project("staff", [employee])
    assert project.several  # written in the form of several entities, for its relations
    assert project.relations_of(employee) == (
        Relation("manager", "Employee", key="manager_id"),
        Relation("employees", "Employee", by="manager_id"),
    )


def test_references_make_relations_both_ways():
    project = make_project("library", parse_entities(LIBRARY))
    author, book, loan = project.entities
    assert project.several and project.rules == "LibraryRules"
    assert project.relations_of(author) == (Relation("books", "Book", by="author_id"),)
    assert project.relations_of(book) == (
        Relation("author", "Author", key="author_id"),
        Relation("loans", "Loan", by="book_id"),
    )
    assert project.relations_of(loan) == (Relation("book", "Book", key="book_id"),)
    assert [project.topic_of(e) for e in project.entities] == [
        "LIBRARY/AUTHOR",
        "LIBRARY/BOOK",
        "LIBRARY/LOAN",
    ]


def test_a_list_named_like_a_field_or_twice_takes_the_field_s_name_too():
    project = make_project(
        "library",
        parse_entities(
            ["--entity", "Book", "author:Author", "editor:Author", "--entity", "Author", "n:Int"]
            + ["--entity", "Loan", "book:Book", "--entity", "Shelf", "loans:Int", "--entity"]
            + ["Pick", "shelf:Shelf"]
        ),
    )
    author, shelf = project.entities[1], project.entities[3]
    assert [r.name for r in project.relations_of(author)] == ["authorBooks", "editorBooks"]
    assert [r.name for r in project.relations_of(shelf)] == ["picks"]
    clash = parse_entities(
        ["--entity", "Book", "shelf:Shelf", "--entity", "Shelf", "books:Int", "shelfBooks:Int"]
    )
    with pytest.raises(
        ScaffoldError,
        match="Shelf would get the list of Books by shelf_id as its field 'shelfBooks', a name "
        "it has already; rename field 'shelf' of Book",
    ):
        make_project("library", clash)


@pytest.mark.parametrize(
    "tokens, message",
    [
        (
            ["--entity", "Box", "n:Int", "--entity", "Boxes", "m:Int"],
            "entity Boxes would make the name 'boxes', which entity Box makes too; rename one",
        ),
        (
            ["--entity", "BookEdge", "n:Int", "--entity", "Book", "m:Int"],
            "entity Book would make the name 'BookEdge', which entity BookEdge makes too",
        ),
        (
            ["--entity", "PageInfo", "n:Int", "--entity", "Book", "m:Int"],
            "entity PageInfo would make the name 'PageInfo', which the generated schema or protos "
            "have already; choose another name",
        ),
    ],
)
def test_entities_making_the_same_names_are_refused(tokens, message):
    with pytest.raises(ScaffoldError) as exc:
        make_project("shop", parse_entities(tokens))
    assert message in str(exc.value)


def test_one_entity_without_a_reference_keeps_the_form_of_one_entity():
    project = make_project("shop", parse_entities(["--entity", "Book", "title:String"]))
    assert not project.several and project.relations == {}
    assert project.rules == "BookRules" and project.topic == "SHOP/BOOK"


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
