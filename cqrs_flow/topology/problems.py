"""Problems found in a topology, each at its key path and line, and the one "did you mean".

Every stage that finds problems (YAML syntax, the spec table, the wiring checks, the node
contracts, the exposure warnings) collects them in a `Problems`; nothing raises until every
problem is known. `suggest` is the one place a misspelt name is matched against the right ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cqrs_flow.errors import Problem, TopologyError

if TYPE_CHECKING:
    from cqrs_flow.topology.yamlsource import LocatedData

__all__ = ["KeyPath", "Problems", "did_you_mean", "format_path", "suggest"]

KeyPath = tuple[Any, ...]


def format_path(path: KeyPath) -> str:
    """('nodes', 'writer', 'commands', 0) -> 'nodes.writer.commands[0]'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def suggest(word: object, choices: Iterable[object], cutoff: float = 0.6) -> str | None:
    """The choice closest to `word` (when close enough to be a misspelling of it), or None."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """ "; did you mean 'x'?" to end a message with, or "" when no choice is close."""
    match = suggest(word, choices)
    return f"; did you mean '{match}'?" if match else ""


class Problems:
    """Collects problems against the key paths of one topology, with the line of each.

    `problems(path, message)` adds one; a problem already collected is not added twice.
    `line` gives the line when it is not that of the key path (a YAML syntax error).
    """

    def __init__(self, located: LocatedData | None = None) -> None:
        self.lines: dict[KeyPath, int] = located.lines if located is not None else {}
        self.problems: list[Problem] = []

    def __call__(self, path: KeyPath, message: str, line: int | None = None) -> None:
        problem = Problem(self.line(path) if line is None else line, format_path(path), message)
        if problem not in self.problems:
            self.problems.append(problem)

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def raise_any(self, source: str) -> None:
        """Raise TopologyError with every problem collected, if there is one."""
        if self.problems:
            raise TopologyError(self.problems, source)
