"""Copies of a topology that run anywhere: free ports, files of their own, edited keys.

Tests and benchmarks start many systems side by side; each gets a copy of a topology file whose
listeners are on free loopback ports, in a directory that holds copies of the protos, schemas and
plugin modules it names: a topology may only name files inside its project (topology/paths.py),
so the copy carries its project with it.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["free_ports", "relocate"]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (held open together while choosing, so none
    comes back twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def relocate(source: Path, target: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Write a copy of topology `source` to `target` with every listener on a free 127.0.0.1
    port, and its protos, schemas and plugin modules copied beside it; `overrides` then set keys
    by dotted path, e.g. {"nodes.writer.delay": "200ms"} (paths they give, such as a store's
    `data`, are relative to `target`)."""
    source = Path(source)
    data = yaml.safe_load(source.read_text())
    here = target.parent
    here.mkdir(parents=True, exist_ok=True)
    project = (source.parent / data.pop("root", ".")).resolve()
    plugin_path = [source.parent / p for p in _listed(data.get("plugin_path", "."))]

    def copied(value: str) -> str:
        """Copy the file `value` names (relative to `source`) to the same place under `target`'s
        directory; a proto comes with its directory's protos, which it may import."""
        original = (source.parent / value).resolve()
        relative = original.relative_to(project)
        siblings = sorted(original.parent.glob("*.proto")) if original.suffix == ".proto" else []
        for file in dict.fromkeys([original, *siblings]):
            _copy(file, here / relative.parent / file.name)
        return relative.as_posix()

    data["proto"] = [copied(p) for p in _listed(data["proto"])]
    data["plugin_path"] = ["."]
    holders = [
        holder
        for node in data["nodes"].values()
        for holder in (node, node.get("write") or {}, node.get("read") or {})
        if "listen" in holder
    ]
    for holder, port in zip(holders, free_ports(len(holders)), strict=True):
        holder["listen"] = f"127.0.0.1:{port}"
    for node in data["nodes"].values():
        if "schema" in node:
            node["schema"] = copied(node["schema"])
    for path, value in (overrides or {}).items():
        place = data
        *parents, last = path.split(".")
        for part in parents:
            place = place[part]
        place[last] = value
    for module in _plugin_modules(data):
        _copy_module(module, plugin_path, here)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def _listed(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _plugin_modules(data: dict[str, Any]) -> set[str]:
    """The top-level modules the plugins of a topology's nodes are imported from."""
    uses = [
        plugin.get("use") if isinstance(plugin, dict) else plugin
        for node in data["nodes"].values()
        for plugin in [
            *(node.get("plugins") or ()),
            *([node["plugin"]] if "plugin" in node else []),
        ]
    ]
    return {use.split(".")[0] for use in uses if isinstance(use, str) and "." in use}


def _copy_module(module: str, plugin_path: list[Path], here: Path) -> None:
    """Copy the package or module `module` from the first plugin directory that has it."""
    for directory in plugin_path:
        package, single = directory / module, directory / f"{module}.py"
        if package.is_dir():
            for file in package.rglob("*.py"):
                _copy(file, here / module / file.relative_to(package))
            return
        if single.is_file():
            _copy(single, here / single.name)
            return


def _copy(file: Path, to: Path) -> None:
    """Copy `file` to `to` (its directory made if missing), unless that is the file itself."""
    if to.resolve() != file.resolve():
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, to)
