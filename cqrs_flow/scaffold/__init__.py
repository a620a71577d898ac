"""`cqrs-flow init`: scaffold a new project (topology, protos, GraphQL schema, a gateway plugin
stub and a README) that `cqrs-flow up` runs as it is.

Everything here is a pure function of a parsed description, except `write_project`:

    entities = parse_entities(["--entity", "Book", "title:String", "year:Int"])
    project = make_project(project_name("bookshop"), entities, port_base=18000)
    write_project(Path("bookshop"), render(project))

Wrong input raises ScaffoldError with a message meant for the user (the CLI shows it as a bad
parameter). One project has exactly one entity: a gateway sends every query to one reader and
a reader reads from one store, which holds one document type (see `make_project`).
"""

from cqrs_flow.scaffold.description import (
    DEFAULT_PORT_BASE,
    PORT_OFFSETS,
    TYPES,
    Entity,
    Field,
    Project,
    ScaffoldError,
    UnknownOption,
    make_project,
    parse_entities,
    parse_entity,
    parse_field,
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
    "ScaffoldError",
    "UnknownOption",
    "make_project",
    "parse_entities",
    "parse_entity",
    "parse_field",
    "project_name",
    "render",
    "write_project",
]
