"""Copies of a topology that run anywhere: free ports, files of their own, edited keys.

Tests and benchmarks start many systems side by side; each gets a copy of a topology file whose
listeners are on free loopback ports, in a directory that holds copies of the protos, schemas and
plugin modules it names: a topology may only name files inside its project (topology/paths.py),
so the copy carries its project with it.
"""

from __future__ import annotations

import random
import shutil
import socket
from collections import deque
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["free_port_run", "free_ports", "relocate"]


# Ports are chosen below the kernel's ephemeral range, from FIRST_PORT up: a port the kernel
# hands out for bind(0) is one it also gives any process's outgoing connection as its local
# port, and one of those could take it before the node it was chosen for binds it.
FIRST_PORT = 10_000
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_random = random.Random()
# Ports this process handed out lately, not handed out again: one chosen a moment ago is free
# until its node binds it.
_given: deque[int] = deque(maxlen=4096)


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux; elsewhere IANA's, 49152)."""
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def _bound() -> socket.socket:
    """A socket bound to a free loopback port below the ephemeral range (bind(0) if none of a
    hundred tries is free, or the range leaves no room below it)."""
    s = socket.socket()
    stop = _ephemeral_start()
    for _ in range(100 if stop > FIRST_PORT else 0):
        port = _random.randrange(FIRST_PORT, stop)
        if port in _given:
            continue
        try:
            s.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    else:
        s.bind(("127.0.0.1", 0))
    _given.append(s.getsockname()[1])
    return s


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (held open together while choosing, so none
    comes back twice), below the ephemeral range (see FIRST_PORT)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_bound())
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_run(count: int, tries: int = 50, taken: Collection[int] = ()) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1 (a writer's replicas serve their
    metrics on consecutive ports), none of them in `taken` (ports chosen already, free until
    their node binds them)."""
    for _ in range(tries):
        first = free_ports(1)[0]
        if any(port in taken for port in range(first, first + count)):
            continue
        sockets = [socket.socket() for _ in range(count)]
        try:
            for offset, s in enumerate(sockets):
                s.bind(("127.0.0.1", first + offset))
            _given.extend(range(first + 1, first + count))
            return first
        except (OSError, OverflowError):  # taken, or past the last port
            continue
        finally:
            for s in sockets:
                s.close()
    raise OSError(f"no {count} consecutive free ports found on 127.0.0.1")


def relocate(source: Path, target: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Write a copy of topology `source` to `target` with every listener (metrics too) on a
    free 127.0.0.1 port, and its protos, schemas, JWKS files and plugin modules copied beside
    it; `overrides` then set keys by dotted path, e.g. {"nodes.writer.delay": "200ms"} (paths
    they give, such as a store's `data`, are relative to `target`; None takes a key out)."""
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
    chosen = free_ports(len(holders))
    for holder, port in zip(holders, chosen, strict=True):
        holder["listen"] = f"127.0.0.1:{port}"
    taken = set(chosen)
    for node in data["nodes"].values():  # metrics and health too, unless switched off
        if node.get("metrics", True) is not False and "url" not in node:
            count = int(node.get("replicas", 1))
            first = free_port_run(count, taken=taken)
            taken.update(range(first, first + count))
            node["metrics"] = f"127.0.0.1:{first}"
    for node in data["nodes"].values():
        if "schema" in node:
            node["schema"] = copied(node["schema"])
        jwks = (node.get("auth") or {}).get("jwks") or {}
        if "file" in jwks:
            jwks["file"] = copied(jwks["file"])
    for path, value in (overrides or {}).items():
        place = data
        *parents, last = path.split(".")
        for part in parents:
            place = place[part]
        if value is None:
            place.pop(last, None)  # None takes the key out (e.g. a gateway's auth)
        else:
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
