"""The exceptions cqrs-flow raises. The CLI turns them into one clear message and an exit status."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CqrsFlowError",
    "NodeError",
    "Problem",
    "ProjectFileError",
    "ProtoError",
    "StartError",
    "TopologyError",
]


class CqrsFlowError(Exception):
    """Base class of every error cqrs-flow reports to its user."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a topology: where (key path and line) and what."""

    line: int | None
    path: str
    message: str

    def format(self, source: str = "") -> str:
        where = source
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        parts = [p for p in (where, self.path) if p]
        return f"{': '.join(parts)}: {self.message}" if parts else self.message


class TopologyError(CqrsFlowError):
    """A topology that cannot be run; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path, p.message))
        self.source = source
        count = len(self.problems)
        head = f"{source or 'topology'}: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head] + ["  " + p.format(source) for p in self.problems]))


class ProjectFileError(CqrsFlowError):
    """A file a topology names that may not be read (outside the project) or cannot be."""


class ProtoError(CqrsFlowError):
    """A .proto file that does not compile, or a name that is not in the compiled protos."""


class StartError(CqrsFlowError):
    """A node that could not be started or did not become ready."""


class NodeError(CqrsFlowError):
    """A node that cannot run with the configuration or environment it was given."""
