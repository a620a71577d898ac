"""YAML text -> plain Python data, remembering the line of every key path.

PyYAML's composer gives nodes with source marks; we build plain dicts and lists from them
ourselves so that every value can be traced back to its line for error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.topology.problems import KeyPath, Problems, format_path

__all__ = ["LocatedData", "parse_yaml"]

# Alias expansion can turn a small file into a huge tree ("billion laughs"); no real topology
# comes anywhere near this many values.
MAX_VALUES = 100_000


@dataclass
class LocatedData:
    """Plain data parsed from YAML plus the 1-based line of every key path in it."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)


def parse_yaml(text: str, source: str = "") -> LocatedData:
    """Parse one YAML document; raise TopologyError with the line of any syntax error."""
    try:
        # The reader checks the characters at once: a control character fails here already.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise TopologyError([Problem(None, "", f"not valid YAML: {exc}")], source) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return LocatedData({}, {(): 1})
        return _Builder(loader, source).build(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = exc.problem or str(exc)
        raise TopologyError([Problem(line, "", f"not valid YAML: {detail}")], source) from None
    except yaml.YAMLError as exc:
        raise TopologyError([Problem(None, "", f"not valid YAML: {exc}")], source) from None
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[KeyPath, int] = {}
        self.problems = Problems()
        self.count = 0
        self.ancestors: set[int] = set()  # ids of the nodes being built: an alias to one recurses
        self.merged: dict[int, int] = {}  # mapping node id -> how many of its pairs '<<' merged in

    def build(self, root: yaml.Node) -> LocatedData:
        data = self.value(root, ())
        self.problems.raise_any(self.source)
        return LocatedData(data, self.lines)

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise TopologyError(
                [
                    Problem(
                        node.start_mark.line + 1,
                        format_path(path),
                        f"more than {MAX_VALUES} values (alias expansion?); refusing to load",
                    )
                ],
                self.source,
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in self.ancestors:
            self.problems(
                path, "recursive alias: a value that contains itself", node.start_mark.line + 1
            )
            return None
        self.ancestors.add(id(node))
        try:
            return self._collection(node, path)
        finally:
            self.ancestors.discard(id(node))

    def _collection(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            if id(node) not in self.merged:  # an alias visits the same node again, flattened
                written = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
                self.loader.flatten_mapping(node)  # puts the pairs merged in by '<<' first
                self.merged[id(node)] = len(node.value) - written
            merged = self.merged[id(node)]
            out: dict[Any, Any] = {}
            written_keys: dict[Any, bool] = {}
            for index, (key_node, value_node) in enumerate(node.value):
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    self.problems(
                        path,
                        f"keys must be plain scalars, not {key!r}",
                        key_node.start_mark.line + 1,
                    )
                    continue
                child = path + (key,)
                is_written = index >= merged
                if key in out and is_written and written_keys.get(key):
                    self.problems(
                        child,
                        "duplicate key (the later one would silently win)",
                        key_node.start_mark.line + 1,
                    )
                    continue
                written_keys[key] = is_written  # a written key overrides a merged one, as in YAML
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.value(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)
