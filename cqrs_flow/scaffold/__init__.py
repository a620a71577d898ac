"""`cqrs-flow init`: scaffold a new project (topology, protos, GraphQL schema, a gateway plugin
stub and a README) that `cqrs-flow up` runs as it is.

Everything here is a pure function of a parsed description, except `write_project`:

    entities = parse_entities(["--entity", "Author", "name:String",
                               "--entity", "Book", "title:String", "author:Author"])
    entities = make_optional(entities, ["Book.year"])  # or parse_required(entity, answer)
    project = make_project(project_name("library"), entities, port_base=18000)
    write_project(Path("library"), render(project))

Wrong input raises ScaffoldError with a message meant for the user (the CLI shows it as a bad
parameter). A project of one entity is written as the shipped contacts system is (a store
describing its one document type, list and get RPCs); one of several entities, or with a
reference (author:Author), has one store holding them all, lists paged, filtered and ordered on
indexes, and relations both ways (several.py).
"""

from cqrs_flow.scaffold.description import (
    DEFAULT_PORT_BASE,
    PORT_OFFSETS,
    TYPES,
    Entity,
    Field,
    Project,
    Relation,
    ScaffoldError,
    UnknownOption,
    make_optional,
    make_project,
    parse_entities,
    parse_entity,
    parse_field,
    parse_required,
    project_name,
)
from cqrs_flow.scaffold.files import render, write_project

__all__ = [
    "DEFAULT_PORT_BASE",
    "PORT_OFFSETS",
    "TYPES",
    "Entity",
    "Field",
    "Project",
    "Relation",
    "ScaffoldError",
    "UnknownOption",
    "make_optional",
    "make_project",
    "parse_entities",
    "parse_entity",
    "parse_field",
    "parse_required",
    "project_name",
    "render",
    "write_project",
]
