"""Copies of a topology that run anywhere: free ports, absolute file paths, edited keys.

Tests and benchmarks start many systems side by side; each gets a copy of a topology file whose
listeners are on free loopback ports and whose proto, schema and plugin paths still point at the
original files.
"""

from __future__ import annotations

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
    port and absolute proto, schema and plugin paths; `overrides` then set keys by dotted path,
    e.g. {"nodes.writer.delay": "200ms"} (a store's `data` stays relative to `target`)."""
    source = Path(source)
    data = yaml.safe_load(source.read_text())

    def absolute(value: Any) -> list[str]:
        values = value if isinstance(value, list) else [value]
        return [str((source.parent / v).resolve()) for v in values]

    data["proto"] = absolute(data["proto"])
    data["plugin_path"] = absolute(data.get("plugin_path", "."))
    holders = [
        holder
        for node in data["nodes"].values()
        for holder in (node, node.get("write") or {}, node.get("read") or {})
        if "listen" in holder
    ]
    for holder, port in zip(holders, free_ports(len(holders))):
        holder["listen"] = f"127.0.0.1:{port}"
    for node in data["nodes"].values():
        if "schema" in node:
            node["schema"] = absolute(node["schema"])[0]
    for path, value in (overrides or {}).items():
        place = data
        *parents, last = path.split(".")
        for part in parents:
            place = place[part]
        place[last] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
