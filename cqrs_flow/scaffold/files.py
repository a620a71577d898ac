"""The files of a scaffolded project, rendered from its description, and writing them.

Each file is a template under templates/ that reads as the file it makes (string.Template:
${project}, ${Entity}, ...; see `_names`), filled by `render`, a pure function of a Project
(relative path -> text). `write_project` writes into a new or empty directory only, so init
never overwrites anything.
"""

from __future__ import annotations

import textwrap
from importlib import resources
from pathlib import Path
from string import Template

import yaml

from cqrs_flow.scaffold.description import (
    KEY,
    PORT_OFFSETS,
    TIMESTAMP,
    WRITE_DELAY,
    Field,
    Project,
    ScaffoldError,
)

__all__ = ["render", "write_project"]

# -- rendering --------------------------------------------------------------------------------

_TEMPLATES = resources.files(__package__) / "templates"


def render(project: Project) -> dict[str, str]:
    """Relative path -> text of every file of the project."""
    name = project.name
    return {
        "topology.yaml": render_topology(project),
        f"proto/{name}.proto": render_proto(project),
        f"schema/{name}.graphql": render_schema(project),
        "plugins/__init__.py": _fill("plugins/__init__.py.tmpl", project),
        f"plugins/{name}.py": render_plugin(project),
        "README.md": render_readme(project),
    }


def _fill(template: str, project: Project, **values: object) -> str:
    """The template under templates/ with its placeholders filled: the project's names (see
    `_names`) and `values`. A placeholder without a value is an error, not an empty string."""
    text = (_TEMPLATES / template).read_text(encoding="utf-8")
    return Template(text).substitute(_names(project), **values)


def _names(p: Project) -> dict[str, object]:
    """The names every template may use. The placeholder's case is the value's: ${Entity} is
    BookReview, ${entity} bookReview, ${entity_snake} book_review, ${entity_words} book review;
    ${Entities}, ${entities_snake} and ${entities_words} are the plurals."""
    e = p.entity
    return {
        "project": p.name,
        "Rules": p.rules,
        "topic": p.topic,  # PROJECT/ENTITY; /ADD, /UPDATE or /DELETE follows
        "port_base": p.port_base,
        **{f"{what}_port": p.port(what) for what in PORT_OFFSETS},
        "Entity": e.name,
        "Entities": e.plural,
        "entity": e.camel,
        "entity_snake": e.snake,
        "entities_snake": e.plural_snake,
        "entity_words": e.words,
        "entities_words": e.plural_words,
        "key": KEY,
        "timestamp": TIMESTAMP,
        "delay": WRITE_DELAY,
    }


def render_topology(p: Project) -> str:
    e = p.entity
    return _fill(
        "topology.yaml.tmpl",
        p,
        project_yaml=_yaml(p.name),
        entity_yaml=_yaml(e.camel),
        entities_snake_yaml=_yaml(e.plural_snake),
        required_yaml=_yaml([e.first_text.name] if e.first_text else []),
    )


def render_proto(p: Project) -> str:
    """The message's own fields are numbered after the key (1); the timestamp comes last."""
    fields = p.entity.fields
    lines = [f"  {f.proto} {f.name} = {number};" for number, f in enumerate(fields, 2)]
    return _fill(
        "proto/project.proto.tmpl",
        p,
        fields="\n".join(lines),
        timestamp_number=len(fields) + 2,
    )


def render_schema(p: Project) -> str:
    e = p.entity
    arguments = [f"{f.name}: {f.graphql}" for f in e.fields]
    return _fill(
        "schema/project.graphql.tmpl",
        p,
        fields="\n".join(f"  {f.name}: {f.graphql}" for f in e.fields),
        add_mutation=_signature(f"add{e.name}", arguments),
        update_mutation=_signature(f"update{e.name}", ["id: String!", *arguments]),
        delete_mutation=_signature(f"delete{e.name}", ["id: String!"]),
    )


def _signature(name: str, arguments: list[str], width: int = 100) -> str:
    """A mutation field on one line, or with one argument a line when that is too long."""
    line = f"{name}({', '.join(arguments)}): RequestResponse!"
    if len(line) + 2 <= width:
        return line
    inner = "".join(f"\n    {a}" for a in arguments)
    return f"{name}({inner}\n  ): RequestResponse!"


def render_plugin(p: Project) -> str:
    """The stub's example rules: a number field, if the entity has one, must not be negative."""
    number = next(
        (f for f in p.entity.fields if f.type in ("Int", "Float") and not f.repeated), None
    )
    number_rule = _fill("plugins/number_rule.tmpl", p, field=number.name) if number else ""
    return _fill("plugins/project.py.tmpl", p, number_rule=number_rule)


def _example_value(f: Field, variant: int) -> str:
    """A GraphQL literal for field `f` (variant 1 for an add, 2 for an update)."""
    one = {
        "String": f'"{f.name} {variant}"',
        "ID": f'"{f.name}-{variant}"',
        "Int": str(40 + variant),
        "Float": f"{variant + 2}.5",
        "Boolean": "true" if variant == 1 else "false",
    }[f.type]
    if not f.repeated:
        return one
    two = {
        "String": f'"{f.name} {variant}b"',
        "ID": f'"{f.name}-{variant}b"',
        "Int": str(variant),
        "Float": "0.5",
        "Boolean": "true",
    }[f.type]
    return f"[{one}, {two}]"


def render_readme(p: Project) -> str:
    e = p.entity
    add_arguments = ", ".join(f"{f.name}: {_example_value(f, 1)}" for f in e.fields)
    add_mutation = f"mutation {{ add{e.name}({add_arguments}) {{ status message id }} }}"
    first = e.first_text
    plugin_rule = (
        f"It refuses a blank `{first.name}` (and trims it), as `required: [{first.name}]` in "
        "topology.yaml asks"
        if first
        else "It checks that the text fields listed under `required` in "
        "topology.yaml are not blank (none yet: the entity has no String field)"
    )
    text = _fill(
        "README.md.tmpl",
        p,
        selection=" ".join([KEY, *(f.name for f in e.fields), TIMESTAMP]),
        add_arguments=add_arguments,
        update_arguments=", ".join(f"{f.name}: {_example_value(f, 2)}" for f in e.fields),
        add_mutation_in_json=add_mutation.replace('"', '\\"'),
        plugin_rule=plugin_rule,
    )
    return _fill_markdown(text)


def _fill_markdown(text: str, width: int = 100) -> str:
    """Fill the prose of Markdown to `width` columns: a paragraph on one line, and each item of
    a list (with a hanging indent). Headings, tables, code and lines broken by hand stay as they
    are."""
    blocks = text.removesuffix("\n").split("\n\n")
    for i, block in enumerate(blocks):
        lines = block.split("\n")
        if all(line.startswith("- ") for line in lines):
            blocks[i] = "\n".join(
                _para(line, width, "  ").replace("  - ", "- ", 1) for line in lines
            )
        elif len(lines) == 1 and not block.startswith(("#", "|", "```", " ")):
            blocks[i] = _para(block, width)
    return "\n\n".join(blocks) + "\n"


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


def _yaml(value: str | list[str]) -> str:
    """A YAML flow scalar or list that reads back as these strings: 'title', but 'null' quoted."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")


def _para(text: str, width: int = 100, indent: str = "") -> str:
    return textwrap.fill(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
