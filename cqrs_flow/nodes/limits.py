"""What one GraphQL request may ask for, measured before the request is parsed or run.

tartiflette parses with libgraphqlparser, a recursive C parser: a query nested ten thousand
levels deep takes it seconds, a hundred thousand crash the process, and a query with a
hundred thousand fields is turned into tens of megabytes of JSON before validation starts.
So the gateway measures the text first with one linear pass over its tokens (no tree is
built) and refuses anything over the topology's `limits` before tartiflette sees it.

The pass is lenient: it only counts, and leaves syntax errors to the parser. Its counts never
fall below what the parser would find (fragments are expanded where they are spread), so
a query it lets through is within the limits.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from cqrs_flow.topology.model import Limits

__all__ = ["Busy", "LimitExceeded", "RequestGate", "check_query", "check_variables"]

# Strings match to their end even when unterminated (the parser reports that): a pattern that
# could fail after a long scan would scan again from every later quote, quadratic in the length.
_TOKEN = re.compile(r'''
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>"""(?:[^"\\]|\\"""|\\(?!""")|"(?!""))*(?:"""|\Z))
  | (?P<string>"(?:[^"\\\n\r]|\\[^\n\r])*(?:"|(?=[\n\r])|\Z))
  | (?P<spread>\.\.\.)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<punct>[!$&():=@\[\]{}|])
  | (?P<other>.)
''', re.VERBOSE | re.DOTALL)

_INTROSPECTION = {"__schema", "__type"}
_OPERATION_KEYWORDS = {"query", "mutation", "subscription"}


class LimitExceeded(Exception):
    """A request over one of the gateway's limits; the message names the limit and its key."""


class Busy(LimitExceeded):
    """More requests in flight than limits.in_flight (or WebSockets than limits.websockets):
    refused at once rather than queued."""


class RequestGate:
    """One gateway's limits, applied to every request whether it came over HTTP or WebSocket."""

    def __init__(self, limits: Limits, introspection: bool = True) -> None:
        self.limits = limits
        self.introspection = introspection
        self.in_flight = 0
        self.connections = 0  # WebSockets open

    def check(self, query: str, variables: Any) -> None:
        """Raise LimitExceeded if the query or its variables are over a limit."""
        check_query(query, self.limits, self.introspection)
        check_variables(variables, self.limits)

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Count one request in flight while the block runs; raise Busy if there is no room."""
        if self.in_flight >= self.limits.in_flight:
            raise Busy(f"the gateway is busy with {self.in_flight} requests (limits.in_flight); try again shortly")
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Count one WebSocket open while the block runs; raise Busy if there is no room."""
        if self.connections >= self.limits.websockets:
            raise Busy(f"the gateway has {self.connections} WebSocket connections open (limits.websockets); "
                       "try again shortly")
        self.connections += 1
        try:
            yield
        finally:
            self.connections -= 1


@dataclass
class _Definition:
    """What one operation or fragment selects by itself, and the fragments it spreads."""

    fields: int = 0
    aliases: int = 0
    depth: int = 0
    spreads: list[tuple[str, int]] = field(default_factory=list)  # (fragment, depth of the spread)


def check_query(query: str, limits: Limits, introspection: bool = True) -> None:
    """Raise LimitExceeded if `query` is over a limit (or asks for introspection when it is off)."""
    operations: list[_Definition] = []
    fragments: dict[str, _Definition] = {}
    current: _Definition | None = None
    # Open brackets: 's' a field's selection set, 'i' an inline fragment's (no deeper level),
    # 'a' arguments, 'l' a list, 'o' an object.
    stack: list[str] = []
    lists: list[int] = []  # items so far in each open list
    selection_depth = tokens = fields = aliases = 0
    previous = before = ""  # the two tokens before this one
    naming_fragment = inline = False

    for match in _TOKEN.finditer(query):
        kind = match.lastgroup
        if kind == "skip":
            continue
        text = match.group()
        tokens += 1
        if tokens > limits.tokens:
            raise LimitExceeded(f"the query has more than {limits.tokens} tokens (limits.tokens)")
        top = stack[-1] if stack else ""
        selecting = top in ("s", "i") and current is not None
        if kind in ("string", "block"):
            quotes = 3 if kind == "block" else 1
            if len(text) - 2 * quotes > limits.string_length:
                raise LimitExceeded(f"a string in the query is longer than {limits.string_length} "
                                    "characters (limits.string_length)")
        if top == "l" and (kind in ("string", "block", "name", "number") or text in ("$", "[", "{")) \
                and previous != "$":
            lists[-1] += 1
            if lists[-1] > limits.list_length:
                raise LimitExceeded(f"a list in the query has more than {limits.list_length} items "
                                    "(limits.list_length)")
        if previous == "..." and selecting:
            inline = text in ("on", "@", "{")  # else a fragment spread
        if text == "{" and (selecting or (not stack and kind == "punct")):
            if current is None:
                current = _Definition()
                operations.append(current)
            if inline:
                stack.append("i")
                inline = False
            else:
                stack.append("s")
                selection_depth += 1
                if selection_depth > limits.depth:
                    raise LimitExceeded(f"the query nests fields more than {limits.depth} levels deep "
                                        "(limits.depth)")
                current.depth = max(current.depth, selection_depth)
        elif text in ("{", "(", "["):
            stack.append({"{": "o", "(": "a", "[": "l"}[text])
            if text == "[":
                lists.append(0)
        elif text in ("}", ")", "]") and stack:
            closed = stack.pop()
            if closed == "s":
                selection_depth -= 1
            elif closed == "l":
                lists.pop()
            if not stack and closed in ("s", "i"):
                current = None  # the definition ends
        elif kind == "name":
            if not stack:
                if naming_fragment:
                    current = fragments.setdefault(text, _Definition())
                    naming_fragment = False
                elif text == "fragment" and current is None:
                    naming_fragment = True
                elif text in _OPERATION_KEYWORDS and current is None:
                    current = _Definition()
                    operations.append(current)
            elif selecting and current is not None:
                if previous == "...":
                    if text != "on":
                        current.spreads.append((text, selection_depth))
                elif previous in ("@", ":") or (previous == "on" and before == "..."):
                    pass  # a directive's name, an inline fragment's type, the field behind an alias
                else:
                    fields += 1
                    current.fields += 1
                    if fields > limits.fields:
                        raise LimitExceeded(f"the query selects more than {limits.fields} fields "
                                            "(limits.fields)")
                    if text in _INTROSPECTION and not introspection:
                        raise LimitExceeded("introspection is switched off on this gateway")
        elif text == ":" and selecting and current is not None:
            aliases += 1
            current.aliases += 1
            if aliases > limits.aliases:
                raise LimitExceeded(f"the query has more than {limits.aliases} aliases (limits.aliases)")
        # Brackets of any kind nest the parser's recursion: bound them all, not only fields.
        if len(stack) > 2 * limits.depth + 2:
            raise LimitExceeded(f"the query nests brackets more than {2 * limits.depth + 2} levels deep "
                                "(twice limits.depth, plus 2)")
        before, previous = previous, text

    _check_expanded(operations, fragments, limits)


def _check_expanded(operations: list[_Definition], fragments: dict[str, _Definition], limits: Limits) -> None:
    """Fragments spread in many places count each time: a few lines can select millions of fields."""
    totals: dict[str, tuple[int, int, int]] = {}

    def total(name: str, visiting: frozenset[str]) -> tuple[int, int, int]:
        if name in totals:
            return totals[name]
        fragment = fragments.get(name)
        if fragment is None or name in visiting:
            return 0, 0, 0  # unknown or cyclic: tartiflette refuses the query anyway
        result = expand(fragment, visiting | {name})
        totals[name] = result
        return result

    def expand(definition: _Definition, visiting: frozenset[str]) -> tuple[int, int, int]:
        fields, aliases, depth = definition.fields, definition.aliases, definition.depth
        for name, at in definition.spreads:
            more_fields, more_aliases, more_depth = total(name, visiting)
            fields, aliases = fields + more_fields, aliases + more_aliases
            depth = max(depth, at - 1 + more_depth)
        return fields, aliases, depth

    for operation in operations:
        fields, aliases, depth = expand(operation, frozenset())
        if depth > limits.depth:
            raise LimitExceeded(f"with its fragments, the query nests fields more than {limits.depth} "
                                "levels deep (limits.depth)")
        if fields > limits.fields:
            raise LimitExceeded(f"with its fragments, the query selects more than {limits.fields} fields "
                                "(limits.fields)")
        if aliases > limits.aliases:
            raise LimitExceeded(f"with its fragments, the query has more than {limits.aliases} aliases "
                                "(limits.aliases)")


def check_variables(variables: Any, limits: Limits) -> None:
    """Raise LimitExceeded if a variable holds a string, list or nesting over the limits."""
    pending: list[tuple[Any, int]] = [(variables, 0)]
    while pending:
        value, depth = pending.pop()  # depth: of the lists and objects holding `value`
        if depth > limits.depth and isinstance(value, (list, dict)):
            raise LimitExceeded(f"a variable nests more than {limits.depth} levels deep (limits.depth)")
        if isinstance(value, str) and len(value) > limits.string_length:
            raise LimitExceeded(f"a string variable is longer than {limits.string_length} characters "
                                "(limits.string_length)")
        if isinstance(value, list):
            if len(value) > limits.list_length:
                raise LimitExceeded(f"a list variable has more than {limits.list_length} items "
                                    "(limits.list_length)")
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
