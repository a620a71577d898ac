"""What every scaffolded file is made with: templates filled with a project's names, and the bits
of text made in Python (YAML scalars, long GraphQL signatures, example values, Markdown filled to
100 columns).

A template under templates/ reads as the file it makes (string.Template: ${project}, ${Entity},
...; see `names`); `fill` fills it, and a placeholder without a value is an error.
"""

from __future__ import annotations

import textwrap
from importlib import resources
from string import Template

import yaml

from cqrs_flow.scaffold.description import (
    KEY,
    PORT_OFFSETS,
    TIMESTAMP,
    WRITE_DELAY,
    Entity,
    Field,
    Project,
)

__all__ = ["example_value", "fill", "fill_markdown", "names", "signature", "yaml_scalar"]

_TEMPLATES = resources.files(__package__) / "templates"


def fill(template: str, project: Project, entity: Entity | None = None, **values: object) -> str:
    """The template under templates/ with its placeholders filled: the names of the project and
    of `entity` (default: its first; see `names`) and `values`. A placeholder without a value is
    an error, not an empty string."""
    text = (_TEMPLATES / template).read_text(encoding="utf-8")
    return Template(text).substitute(names(project, entity), **values)


def names(p: Project, e: Entity | None = None) -> dict[str, object]:
    """The names every template may use. The placeholder's case is the value's: ${Entity} is
    BookReview, ${entity} bookReview, ${entity_snake} book_review, ${entity_words} book review;
    ${Entities}, ${entities}, ${entities_snake} and ${entities_words} are the plurals."""
    e = e or p.entity
    return {
        "project": p.name,
        "Rules": p.rules,
        "topic": p.topic_of(e),  # PROJECT/ENTITY; /ADD, /UPDATE or /DELETE follows
        "port_base": p.port_base,
        **{f"{what}_port": p.port(what) for what in PORT_OFFSETS},
        "Entity": e.name,
        "Entities": e.plural,
        "entity": e.camel,
        "entities": e.plural_camel,
        "entity_snake": e.snake,
        "entities_snake": e.plural_snake,
        "entity_words": e.words,
        "entities_words": e.plural_words,
        "Entities_words": e.plural_words.capitalize(),
        "key": KEY,
        "timestamp": TIMESTAMP,
        "delay": WRITE_DELAY,
    }


def signature(
    name: str, arguments: list[str], returns: str = "RequestResponse!", indent: str = "  "
) -> str:
    """A field with arguments on one line, or with one argument a line when that is longer than
    100 columns (at `indent`)."""
    line = f"{name}({', '.join(arguments)}): {returns}"
    if len(indent + line) <= 100:
        return line
    inner = "".join(f"\n{indent}  {a}" for a in arguments)
    return f"{name}({inner}\n{indent}): {returns}"


def example_value(f: Field, variant: int) -> str:
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


def fill_markdown(text: str, width: int = 100) -> str:
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


def yaml_scalar(value: str | list[str]) -> str:
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
