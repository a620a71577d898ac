"""The files of a project of several entities (or of one that refers to itself): one store holding
them all (`entities:`), lists as connections paged, filtered and ordered on each entity's
indexes, and relations from references (author:Author).

Per entity: add, update and remove commands on <PROJECT>/<ENTITY>/..., their write RPCs (a
removal names its entity: `RemoveBook: Book.delete`), a Get RPC on the read side and the reader,
the mutations add<Entity>, update<Entity> and remove<Entity> (the last two `exists: <Entity>`),
and the queries <entities>: {list: <Entity>} and <entity>: {get: <Entity>}. The GraphQL schema
spells out the types the gateway would otherwise add (connections, edges, orders, filters), so
that users see them. Every file comes from the templates under templates/entities/.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cqrs_flow.scaffold.description import (
    FILTERS,
    KEY,
    Entity,
    Field,
    Project,
    Relation,
)
from cqrs_flow.scaffold.text import example_value, fill, fill_markdown, signature, yaml_scalar
from cqrs_flow.topology import spec

__all__ = ["render"]

# A connection's default page: the gateway's limits.page_size unless the topology says otherwise.
PAGE_SIZE = spec.LIMITS.fields["page_size"].default


def render(project: Project) -> dict[str, str]:
    """Relative path -> text of every file of the project."""
    name = project.name
    return {
        "topology.yaml": render_topology(project),
        f"proto/{name}.proto": render_proto(project),
        f"schema/{name}.graphql": render_schema(project),
        "plugins/__init__.py": fill("plugins/__init__.py.tmpl", project),
        f"plugins/{name}.py": render_plugin(project),
        "README.md": render_readme(project),
    }


# -- topology.yaml ------------------------------------------------------------------------------


def render_topology(p: Project) -> str:
    entities = p.entities
    commands = [
        (f"{verb}_{e.snake}:", f"{{topic: {p.topic_of(e)}/{verb.upper()},", f"rpc: {rpc}}}")
        for e in entities
        for verb, rpc in _commands(e)
    ]
    return fill(
        "entities/topology.yaml.tmpl",
        p,
        project_yaml=yaml_scalar(p.name),
        commands="\n".join(_columns(commands, "  ")),
        entity_sections="\n".join(_topology_entity(p, e) for e in entities),
        entity_names=", ".join(e.name for e in entities),
        write_rpcs="\n".join(
            _columns(
                [
                    (f"{rpc}:", f"{e.name}.delete" if verb == "remove" else _WRITE_OPS[verb])
                    for e in entities
                    for verb, rpc in _commands(e)
                ],
                "        ",
            )
        ),
        read_rpcs="\n".join(f"        Get{e.name}: get" for e in entities),
        writer_commands="\n".join(
            f"      - {verb}_{e.snake}" for e in entities for verb, _ in _commands(e)
        ),
        queries="\n".join(
            _columns(
                [
                    row
                    for e in entities
                    for row in (
                        (f"{e.plural_camel}:", f"{{list: {e.name}}}"),
                        (f"{e.camel}:", f"{{get: {e.name}}}"),
                    )
                ],
                "      ",
            )
        ),
        mutations="".join(fill("entities/topology-mutations.tmpl", p, e) for e in entities).rstrip(
            "\n"
        ),
        required_yaml=yaml_scalar(_required(p)),
    )


_WRITE_OPS = {"add": "insert", "update": "update"}


def _commands(e: Entity) -> list[tuple[str, str]]:
    """(verb, write RPC) of each of an entity's commands."""
    return [(verb, f"{verb.capitalize()}{e.name}") for verb in ("add", "update", "remove")]


def _topology_entity(p: Project, e: Entity) -> str:
    text = fill(
        "entities/topology-entity.tmpl",
        p,
        e,
        entities_snake_yaml=yaml_scalar(e.plural_snake),
        indexes_yaml=yaml_scalar(list(e.indexes)),
    )
    relations = p.relations_of(e)
    if not relations:
        return text.rstrip("\n")
    lines = _columns(
        [
            (f"{r.name}:", f"{{entity: {r.entity}, {'by' if r.many else 'key'}: {r.by or r.key}}}")
            for r in relations
        ],
        "      ",
        last_too=True,
    )
    comments = [f"  # {_relation_text(p, r)}" for r in relations]
    return text + "    relations:\n" + "\n".join(map(str.__add__, lines, comments))


def _required(p: Project) -> list[str]:
    """The text field each entity's plugin rule guards: its first String field."""
    return [f"{e.snake}.{e.first_text.name}" for e in p.entities if e.first_text]


# -- the proto ----------------------------------------------------------------------------------


def render_proto(p: Project) -> str:
    return fill(
        "entities/project.proto.tmpl",
        p,
        entity_messages="".join(_proto_entity(p, e) for e in p.entities),
        write_rpcs="\n".join(
            f"  rpc {rpc}({rpc}Request) returns (WriteResponse);"
            for e in p.entities
            for _, rpc in _commands(e)
        ),
        read_rpcs="\n".join(
            f"  rpc Get{e.name}(Get{e.name}Request) returns (Get{e.name}Response);"
            for e in p.entities
        ),
    )


def _proto_entity(p: Project, e: Entity) -> str:
    """The message's own fields are numbered after the key (1); the timestamp comes last. A
    reference is the string field holding the other entity's key."""
    lines = [
        f"  {f.proto} {f.stored} = {number};"
        + (f"  // the {KEY} of its {f.refers} ({e.name}.{f.name})" if f.refers else "")
        for number, f in enumerate(e.fields, 2)
    ]
    return fill(
        "entities/proto-entity.tmpl",
        p,
        e,
        fields="\n".join(lines),
        timestamp_number=len(e.fields) + 2,
    )


# -- the GraphQL schema -------------------------------------------------------------------------


def render_schema(p: Project) -> str:
    return fill(
        "entities/project.graphql.tmpl",
        p,
        entity_types="".join(_schema_entity(p, e) for e in p.entities),
        queries="\n".join(
            fill(
                "entities/schema-queries.tmpl",
                p,
                e,
                list_query=signature(
                    e.plural_camel, _connection_arguments(e), f"{e.name}Connection!"
                ),
                page_size=PAGE_SIZE,
            ).rstrip("\n")
            for e in p.entities
        ),
        mutations="\n".join(_schema_mutations(p, e) for e in p.entities),
    )


def _schema_entity(p: Project, e: Entity) -> str:
    fields = []
    for f in e.fields:
        if f.refers:
            fields.append(f'  "Key of the {f.refers} that {f.name} leads to."')
        fields.append(f"  {f.stored}: {f.graphql}")
    relations = []
    for r in p.relations_of(e):
        relations.append(f'  "{_relation_text(p, r).capitalize()}."')
        if r.many:
            target = _entity(p, r.entity)
            relations.append(
                "  " + signature(r.name, _connection_arguments(target), f"{target.name}Connection!")
            )
        else:
            relations.append(f"  {r.name}: {r.entity}")
    indexed = [f for f in e.fields if f.indexed]
    return fill(
        "entities/schema-entity.tmpl",
        p,
        e,
        fields="\n".join(fields),
        relations="\n".join(relations),
        order_fields="\n".join(f"  {name}" for name in (KEY, *e.indexes)),
        where_fields="\n".join(
            [f"  {KEY}: StringFilter"] + [f"  {f.stored}: {FILTERS[f.type]}" for f in indexed]
        ),
    ).replace("\n\n}", "\n}")  # an entity without relations


def _connection_arguments(e: Entity) -> list[str]:
    return [
        "first: Int",
        "after: String",
        "last: Int",
        "before: String",
        f"where: {e.name}Where",
        f"orderBy: {e.name}Order",
    ]


def _schema_mutations(p: Project, e: Entity) -> str:
    arguments = [f"{f.stored}: {f.argument}" for f in e.fields]
    return fill(
        "entities/schema-mutations.tmpl",
        p,
        e,
        add_mutation=signature(f"add{e.name}", arguments),
        update_mutation=signature(f"update{e.name}", [f"{KEY}: String!", *arguments]),
        remove_mutation=signature(f"remove{e.name}", [f"{KEY}: String!"]),
    ).rstrip("\n")


# -- the plugin ---------------------------------------------------------------------------------


def render_plugin(p: Project) -> str:
    """The stub's example rules: a number field of the first entity that has one must not be
    negative."""
    numbered = next(
        (
            (e, f)
            for e in p.entities
            for f in e.fields
            if f.type in ("Int", "Float") and not f.repeated
        ),
        None,
    )
    number_rule = (
        fill("plugins/number_rule.tmpl", p, numbered[0], field=numbered[1].name) if numbered else ""
    )
    return fill(
        "entities/plugin.py.tmpl",
        p,
        entity_list=_and([e.plural_words for e in p.entities]),
        number_rule=number_rule,
    )


# -- the README ---------------------------------------------------------------------------------


def render_readme(p: Project) -> str:
    required = _required(p)
    plugin_rule = (
        f"It refuses a blank {_and([f'`{r}`' for r in required])} (and trims them), as "
        "`required` in topology.yaml asks"
        if required
        else "It checks that the text fields listed under `required` in topology.yaml are not "
        "blank (none yet: no entity has a String field)"
    )
    text = fill(
        "entities/README.md.tmpl",
        p,
        entity_list=_and([e.plural_words for e in p.entities]),
        operations="\n".join(_operations(p)),
        filter_example=_filter_example(p),
        page_size=PAGE_SIZE,
        relation_list="\n".join(_relation_items(p)),
        project_topic=p.name.upper(),
        plugin_rule=plugin_rule,
    )
    return fill_markdown(text)


def _operations(p: Project) -> list[str]:
    """Adds in an order where what a reference needs is added first, a list of each entity
    following its relations, a lookup, an update and a removal."""
    ordered = _in_reference_order(p.entities)
    out = []
    for e in ordered:
        arguments = ", ".join(f"{f.stored}: {_example(f, 1)}" for f in e.fields)
        out.append(f"mutation Add{e.name} {{ add{e.name}({arguments}) {{ status message id }} }}")
    for e in p.entities:
        out.append(
            f"query {e.plural} {{ {e.plural_camel}(first: 10) {{ {_list_selection(p, e)} }} }}"
        )
    first = ordered[0]
    out.append(
        f'query {first.name} {{ {first.camel}({KEY}: "<{first.words} id>") '
        f"{{ {_selection(p, first, deep=True)} }} }}"
    )
    updated = ", ".join(f"{f.stored}: {_example(f, 2)}" for f in first.fields)
    out.append(
        f"mutation Update{first.name} {{ update{first.name}"
        f'({KEY}: "<{first.words} id>", {updated}) {{ status message }} }}'
    )
    out.append(
        f"mutation Remove{first.name} {{ remove{first.name}"
        f'({KEY}: "<{first.words} id>") {{ status message }} }}'
    )
    return out


def _example(f: Field, variant: int) -> str:
    """An example value; a reference's is the placeholder of the id an add answered."""
    return f'"<{_words(f.refers or "")} id>"' if f.refers else example_value(f, variant)


def _list_selection(p: Project, e: Entity) -> str:
    page = "pageInfo { hasNextPage endCursor }"
    return f"totalCount edges {{ cursor node {{ {_selection(p, e)} }} }} {page}"


def _selection(p: Project, e: Entity, deep: bool = False) -> str:
    """The key and the fields of an entity's documents, then its relations: to one, the other's
    first field; to many, how many (and with `deep`, their first fields too)."""
    parts = [KEY, *(f.stored for f in e.fields)]
    for r in p.relations_of(e):
        target = _entity(p, r.entity)
        shown = _shown(target)
        if not r.many:
            parts.append(f"{r.name} {{ {shown} }}")
        elif deep:
            parts.append(f"{r.name}(first: 10) {{ totalCount nodes {{ {shown} }} }}")
        else:
            parts.append(f"{r.name} {{ totalCount }}")
    return " ".join(parts)


def _shown(e: Entity) -> str:
    """What shows a document in a relation's example: its first text field, else its key."""
    return e.first_text.name if e.first_text else KEY


def _filter_example(p: Project) -> str:
    """A list filtered on a text index and ordered on it, or on the key."""
    for e in p.entities:
        if e.first_text is not None:
            f = e.first_text.name
            return (
                f'`{e.plural_camel}(where: {{{f}: {{prefix: "{f}"}}}}, orderBy: {{field: {f}, '
                f"direction: DESC}}, first: 20)`"
            )
    e = p.entity
    return f"`{e.plural_camel}(orderBy: {{field: {KEY}, direction: DESC}}, first: 20)`"


def _relation_items(p: Project) -> list[str]:
    return [
        f"- `{e.name}.{r.name}`: {_relation_text(p, r)}"
        + (f" (a connection, indexed on `{r.by}`)" if r.many else f" (by `{r.key}`)")
        for e in p.entities
        for r in p.relations_of(e)
    ]


# -- shared -------------------------------------------------------------------------------------


def _relation_text(p: Project, r: Relation) -> str:
    """'the author whose id is its author_id', 'the books whose author_id is its id'."""
    target = _entity(p, r.entity)
    if r.many:
        return f"the {target.plural_words} whose {r.by} is its {KEY}"
    return f"the {target.words} whose {KEY} is its {r.key}"


def _entity(p: Project, name: str) -> Entity:
    return next(e for e in p.entities if e.name == name)


def _in_reference_order(entities: tuple[Entity, ...]) -> list[Entity]:
    """The entities with each after those it refers to, where references allow (between
    several entities they never come round in a circle: parse_entities refuses that)."""
    ordered: list[Entity] = []
    while len(ordered) < len(entities):
        left = [e for e in entities if e not in ordered]
        ready = [
            e
            for e in left
            if all(f.refers in (e.name, *(o.name for o in ordered)) for f in e.fields if f.refers)
        ]
        ordered.append((ready or left)[0])
    return ordered


def _columns(rows: Sequence[tuple[str, ...]], indent: str, last_too: bool = False) -> list[str]:
    """Rows of cells, each column as wide as its widest cell (but the last, unless
    `last_too`), one space apart."""
    count = len(rows[0]) if last_too else len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(count)]
    return [
        indent + " ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), *row[count:]])
        for row in rows
    ]


def _words(name: str) -> str:
    """'author' -> 'author', 'main_author' -> 'main author', 'BookReview' -> 'book review'."""
    return " ".join(w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name))


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
