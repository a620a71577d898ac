"""Secrets the topology points at but never holds: `{env: NAME}` or `{file: path}`.

A connection URL may carry a password, so a topology names where to read it (an environment
variable, or a file in the project, relative to the topology file, read by
topology/paths.py) and the node reads it when it starts. The
value is never logged or printed. One function reads every such source, so that each key that
needs a secret reads it the same way. A file that other users may read is refused, as ssh and
Mosquitto do: the secret in it is no secret any more.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from cqrs_flow.errors import NodeError, ProjectFileError
from cqrs_flow.topology.model import SecretSource, Topology
from cqrs_flow.topology.paths import project_path, read_project_file

__all__ = ["MAX_SECRET_BYTES", "read_source"]

MAX_SECRET_BYTES = 4096


def read_source(
    source: SecretSource, topology: Topology, key: str, env: Mapping[str, str] = os.environ
) -> str:
    """The secret `source` names, read now; `key` is the topology key that named it (for errors).

    NodeError says what is missing and how to provide it; the error never holds the secret.
    """
    if source.env:
        value = env.get(source.env, "").strip()
        if not value:
            raise NodeError(
                f"{key} is read from the environment variable {source.env}, which is not "
                f"set or empty; set it in the environment `up` (or the node) runs in, "
                f"e.g. export {source.env}='...'"
            )
        return value
    if source.file is None:
        raise NodeError(f"{key} names no source; write {{env: NAME}} or {{file: path}}")
    try:
        raw = read_project_file(topology, source.file, MAX_SECRET_BYTES, "secret file")
        mode = stat.S_IMODE(project_path(topology, source.file).stat().st_mode)
    except (ProjectFileError, OSError) as exc:
        raise NodeError(
            f"cannot read {key} from the file {source.file}: {exc}; create it inside the "
            "project, readable by the node's user only (chmod 600), holding just the value"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise NodeError(
            f"the file {source.file} ({key}) may be read or changed by other users (mode "
            f"{mode:04o}); make it readable by its owner only: chmod 600 {source.file}"
        )
    value = raw.decode("utf-8", "replace").strip()
    if not value:
        raise NodeError(f"the file {source.file} ({key}) is empty; put the value in it")
    return value
