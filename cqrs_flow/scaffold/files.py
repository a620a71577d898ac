"""The files of a scaffolded project, rendered from its description, and writing them.

Each file is a template under templates/ that reads as the file it makes, filled (text.py) by
`render`, a pure function of a Project (relative path -> text). A project of one entity is
written here; one of several entities, or with references, by several.py. `write_project`
writes into a new or empty directory only, so init never overwrites anything.
"""

from __future__ import annotations

from pathlib import Path

from cqrs_flow.scaffold import several
from cqrs_flow.scaffold.description import KEY, TIMESTAMP, Project, ScaffoldError
from cqrs_flow.scaffold.text import example_value, fill, fill_markdown, signature, yaml_scalar

__all__ = ["render", "write_project"]

# -- rendering --------------------------------------------------------------------------------


def render(project: Project) -> dict[str, str]:
    """Relative path -> text of every file of the project."""
    if project.several:
        return several.render(project)
    name = project.name
    return {
        "topology.yaml": render_topology(project),
        f"proto/{name}.proto": render_proto(project),
        f"schema/{name}.graphql": render_schema(project),
        "plugins/__init__.py": fill("plugins/__init__.py.tmpl", project),
        f"plugins/{name}.py": render_plugin(project),
        "README.md": render_readme(project),
    }


def render_topology(p: Project) -> str:
    e = p.entity
    return fill(
        "topology.yaml.tmpl",
        p,
        project_yaml=yaml_scalar(p.name),
        entity_yaml=yaml_scalar(e.camel),
        entities_snake_yaml=yaml_scalar(e.plural_snake),
        required_yaml=yaml_scalar([e.first_text.name] if e.first_text else []),
    )


def render_proto(p: Project) -> str:
    """The message's own fields are numbered after the key (1); the timestamp comes last."""
    fields = p.entity.fields
    lines = [f"  {f.proto} {f.name} = {number};" for number, f in enumerate(fields, 2)]
    return fill(
        "proto/project.proto.tmpl",
        p,
        fields="\n".join(lines),
        timestamp_number=len(fields) + 2,
    )


def render_schema(p: Project) -> str:
    e = p.entity
    arguments = [f"{f.name}: {f.argument}" for f in e.fields]
    return fill(
        "schema/project.graphql.tmpl",
        p,
        fields="\n".join(f"  {f.name}: {f.graphql}" for f in e.fields),
        add_mutation=signature(f"add{e.name}", arguments),
        update_mutation=signature(f"update{e.name}", ["id: String!", *arguments]),
        delete_mutation=signature(f"delete{e.name}", ["id: String!"]),
    )


def render_plugin(p: Project) -> str:
    """The stub's example rules: a number field, if the entity has one, must not be negative."""
    number = next(
        (f for f in p.entity.fields if f.type in ("Int", "Float") and not f.repeated), None
    )
    number_rule = fill("plugins/number_rule.tmpl", p, field=number.name) if number else ""
    return fill("plugins/project.py.tmpl", p, number_rule=number_rule)


def render_readme(p: Project) -> str:
    e = p.entity
    add_arguments = ", ".join(f"{f.name}: {example_value(f, 1)}" for f in e.fields)
    add_mutation = f"mutation {{ add{e.name}({add_arguments}) {{ status message id }} }}"
    first = e.first_text
    plugin_rule = (
        f"It refuses a blank `{first.name}` (and trims it), as `required: [{first.name}]` in "
        "topology.yaml asks"
        if first
        else "It checks that the text fields listed under `required` in "
        "topology.yaml are not blank (none yet: the entity has no String field)"
    )
    text = fill(
        "README.md.tmpl",
        p,
        selection=" ".join([KEY, *(f.name for f in e.fields), TIMESTAMP]),
        add_arguments=add_arguments,
        update_arguments=", ".join(f"{f.name}: {example_value(f, 2)}" for f in e.fields),
        add_mutation_in_json=add_mutation.replace('"', '\\"'),
        plugin_rule=plugin_rule,
    )
    return fill_markdown(text)


# -- writing ----------------------------------------------------------------------------------


def write_project(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write `files` under `directory`, which must not exist or be empty; the paths written."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise ScaffoldError(f"{directory} exists and is not a directory; nothing was written")
        if any(directory.iterdir()):
            raise ScaffoldError(
                f"{directory} is not empty; init writes only into a new or empty "
                "directory, to overwrite nothing (nothing was written)"
            )
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
