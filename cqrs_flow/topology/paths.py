"""Files a topology names: the one rule for where they may be, and the one reader of them.

A path in a topology is relative to the topology file and must stay inside the project
directory: the topology file's directory, or the directory above it that the top-level key
`root` names. The rule is checked on the path resolved with every symbolic link followed, so
neither `..`, an absolute path nor a link leads out. `read_project_file` is how every file a
topology names is read: it applies the rule, reads only regular files up to a size limit, and
its errors never hold what the file contains.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath

from cqrs_flow.errors import ProjectFileError
from cqrs_flow.topology.model import Topology

__all__ = [
    "MAX_PEM_BYTES",
    "MAX_SOURCE_BYTES",
    "file_problem",
    "path_problem",
    "project_directory",
    "project_path",
    "read_project_file",
    "root_problem",
]

# Proto and GraphQL schema files beyond this are refused before anything reads them.
MAX_SOURCE_BYTES = 4 * 1024 * 1024
# A PEM file (certificate chain, key or CA bundle) beyond this is not one.
MAX_PEM_BYTES = 1_000_000


def root_problem(topology: Topology) -> str | None:
    """Why the top-level key `root` cannot be the project directory, or None.

    The project holds the topology file: `root` is its directory (`.`) or one above it (`..`,
    `../..`), never the filesystem root, which would let the topology name any file.
    """
    written = topology.project
    if written.is_absolute():
        return f"'{written}' is an absolute path; write the project directory relative to this file"
    here = topology.root.resolve()
    project = (topology.root / written).resolve()
    if project != here and project not in here.parents:
        return (
            f"'{written}' is not the topology file's directory or one above it; the project "
            "directory holds the topology file (e.g. root: ..)"
        )
    if project != here and project == Path(project.anchor):
        return (
            f"'{written}' is the filesystem root, which would let the topology name any file; "
            "name the project directory (e.g. root: ..)"
        )
    return None


def project_directory(topology: Topology) -> Path:
    """The project directory, resolved; the topology file's own directory when `root` is not
    one it may name (that problem is reported by the checks)."""
    if root_problem(topology) is not None:
        return topology.root.resolve()
    return (topology.root / topology.project).resolve()


def path_problem(topology: Topology, relative: PurePath | str) -> str | None:
    """Why the path `relative` may not be used, or None: it is absolute, or it leads out of the
    project directory (through `..` or a symbolic link)."""
    relative = PurePath(relative)
    if relative.is_absolute():
        return (
            f"'{relative}' is an absolute path; write it relative to the topology file, "
            "inside the project directory"
        )
    project = project_directory(topology)
    target = (topology.root / relative).resolve()
    if target == project or project in target.parents:
        return None
    written = Path(os.path.normpath(topology.root.resolve() / relative))
    how = "" if written != project and project not in written.parents else " through a link"
    return (
        f"{relative} leads out of the project directory {project}{how}; keep files inside it, "
        "or say where the project is with the top-level key 'root' (e.g. root: ..)"
    )


def project_path(topology: Topology, relative: PurePath | str) -> Path:
    """The resolved path `relative` names; ProjectFileError when the path rule refuses it."""
    problem = path_problem(topology, relative)
    if problem is not None:
        raise ProjectFileError(problem)
    return (topology.root / relative).resolve()


def file_problem(
    topology: Topology, relative: PurePath | str, limit: int, what: str = "file"
) -> str | None:
    """Why the file `relative` names could not be read with `read_project_file`, or None;
    found without reading it (its owner may be the only one allowed to)."""
    problem = path_problem(topology, relative)
    if problem is not None:
        return problem
    try:
        info = (topology.root / relative).stat()
    except OSError as exc:
        return _unreadable(relative, what, exc)
    return _content_problem(info, relative, limit, what)


def read_project_file(
    topology: Topology, relative: PurePath | str, limit: int, what: str = "file"
) -> bytes:
    """The content of the file `relative` names, of at most `limit` bytes.

    ProjectFileError when the path rule refuses it, or it is missing, unreadable, not a regular
    file or larger than `limit`; `what` names the file in the message ("TLS certificate").
    """
    path = project_path(topology, relative)
    try:
        # Non-blocking: a FIFO put in the project must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ProjectFileError(_unreadable(relative, what, exc)) from None
    try:
        problem = _content_problem(os.fstat(fd), relative, limit, what)
        if problem is not None:
            raise ProjectFileError(problem)
        chunks: list[bytes] = []
        while chunk := os.read(fd, limit + 1 - sum(map(len, chunks))):
            chunks.append(chunk)
    except OSError as exc:
        raise ProjectFileError(_unreadable(relative, what, exc)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # it grew since fstat
        raise ProjectFileError(f"the {what} {relative} is over {limit} bytes")
    return data


def _unreadable(relative: PurePath | str, what: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{what} not found: {relative} (paths are relative to the topology file)"
    return f"cannot read the {what} {relative}: {exc.strerror or type(exc).__name__}"


def _content_problem(
    info: os.stat_result, relative: PurePath | str, limit: int, what: str
) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return f"the {what} {relative} is not a regular file"
    if info.st_size > limit:
        return f"the {what} {relative} is {info.st_size} bytes; it may be at most {limit}"
    return None
