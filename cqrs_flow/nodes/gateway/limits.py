"""What one GraphQL request may ask for, measured before the request is parsed or run.

tartiflette parses with libgraphqlparser, a recursive C parser: a query nested ten thousand
levels deep takes it seconds, a hundred thousand crash the process, and a query with a
hundred thousand fields is turned into tens of megabytes of JSON before validation starts.
So the gateway measures the text first with one linear pass over its tokens (no tree is
built) and refuses anything over the topology's `limits` before tartiflette sees it.

The pass is lenient: it only counts, and leaves syntax errors to the parser. Its counts never
fall below what the parser would find (fragments are expanded where they are spread), so
a query it lets through is within the limits. What a query asks for (introspection, its cost)
is decided afterwards on the document the parser made (cost.py), never on the text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cqrs_flow.nodes.gateway.refusals import REQUEST_ID, Refused
from cqrs_flow.topology.model import Limits
from cqrs_flow.transport.deadline import within

if TYPE_CHECKING:
    from cqrs_flow.nodes.gateway.cost import Costs

__all__ = [
    "Busy",
    "LimitExceeded",
    "OperationTimeout",
    "RequestGate",
    "SocketPlace",
    "TooManyRequests",
    "caller_key",
    "caller_of",
    "check_query",
    "check_text",
    "check_variables",
]

T = TypeVar("T")

log = logging.getLogger("cqrs_flow.gateway")

# Callers whose rate is remembered at most; beyond, the longest idle are forgotten (a forgotten
# caller starts again with a full bucket).
MAX_CALLERS = 100_000
# Query texts that passed check_query, kept so that a client sending the same text again (as
# clients do, with other variables) is not measured again: up to MEASURED texts of at most
# MEASURED_CHARS characters each, the least recently seen forgotten first.
MEASURED = 1024
MEASURED_CHARS = 4096

# Strings match to their end even when unterminated (the parser reports that): a pattern that
# could fail after a long scan would scan again from every later quote, quadratic in the length.
_TOKEN = re.compile(
    r'''
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>"""(?:[^"\\]|\\"""|\\(?!""")|"(?!""))*(?:"""|\Z))
  | (?P<string>"(?:[^"\\\n\r]|\\[^\n\r])*(?:"|(?=[\n\r])|\Z))
  | (?P<spread>\.\.\.)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<punct>[!$&():=@\[\]{}|])
  | (?P<other>.)
''',
    re.VERBOSE | re.DOTALL,
)

# A lone surrogate: JSON may carry one (\ud800), Python keeps it, UTF-8 cannot encode it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_OPERATION_KEYWORDS = {"query", "mutation", "subscription"}
_OPENING = {"{": "o", "(": "a", "[": "l"}  # the bracket kinds of check_query's stack


class LimitExceeded(Refused):
    """A request over one of the gateway's limits; the message names the limit and its key."""

    code = "LIMIT_EXCEEDED"


class Busy(LimitExceeded):
    """More requests in flight than limits.in_flight (or WebSockets than limits.websockets):
    refused at once rather than queued, so callers back off instead of piling up."""

    code = "BUSY"
    status = 503


class OperationTimeout(LimitExceeded):
    """An operation that ran longer than limits.timeout, cut off."""

    code = "TIMEOUT"
    status = 504


class TooManyRequests(LimitExceeded):
    """One caller over its own share (limits.per_caller_in_flight, limits.rate), with the
    seconds to wait before trying again."""

    code = "TOO_MANY_REQUESTS"
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


class _Share:
    """One caller's operations running (their cost) and waiting for their turn."""

    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.running = 0
        self.waiting: deque[tuple[asyncio.Future[None], int]] = deque()


class RequestGate:
    """One gateway's limits, applied to every request whether it came over HTTP or WebSocket.

    Per-caller limits count by an opaque caller key (`caller_key`): the subject of the
    caller's token, or the client's address (`caller_of`) without one."""

    def __init__(
        self, limits: Limits, introspection: bool = True, costs: Costs | None = None
    ) -> None:
        if not introspection and costs is None:
            raise ValueError("introspection is refused on the parsed document: give the costs")
        self.limits = limits
        self.introspection = introspection
        self.costs = costs  # None: no schema to count against (the cost is not checked)
        self.in_flight = 0
        self.connections = 0  # WebSockets open
        self.sockets: dict[str, int] = {}  # caller -> its WebSockets open (only those with any)
        self.callers: dict[str, int] = {}  # caller -> its requests in flight (only those with any)
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when), oldest first
        self._shares: dict[str, _Share] = {}  # caller -> the cost of its operations running
        self._measured: OrderedDict[str, None] = OrderedDict()  # texts within the limits

    def check(self, query: str, variables: Any, operation_name: str | None = None) -> int:
        """Raise LimitExceeded if the query or its variables are over a limit (or the query asks
        for introspection when it is off); else its cost. The measure of the text comes first:
        only a text within it is parsed, and the rest is decided on the parsed document."""
        known = query in self._measured  # measured, and checked for text, before
        check_text(query, variables, operation_name, query_checked=known)
        if known:
            self._measured.move_to_end(query)
        else:
            check_query(query, self.limits)
            if len(query) <= MEASURED_CHARS:
                self._measured[query] = None
                if len(self._measured) > MEASURED:
                    self._measured.popitem(last=False)
        check_variables(variables, self.limits)
        if self.costs is None:
            return 0
        if not self.introspection and self.costs.introspects(query):
            raise LimitExceeded(
                "introspection is switched off on this gateway", "INTROSPECTION_OFF"
            )
        cost = self.costs.cost(query, operation_name, variables)
        if cost > self.limits.cost:
            raise LimitExceeded(
                f"the query costs {cost:,}, more than {self.limits.cost:,} (limits.cost): each "
                "object counts 1, and a list multiplies each item by its size (its `count`, or "
                "a page's `first` or `last`); ask for fewer items or fewer aliases"
            )
        return cost

    def operation_type(self, query: str, operation_name: str | None = None) -> str | None:
        """What the operation to run is (query, mutation or subscription), by the parsed
        document; None when that is not known (the engine answers what is wrong)."""
        if self.costs is None:
            return None
        return self.costs.operation_type(query, operation_name)

    def _release(self, caller: str, share: _Share, cost: int) -> None:
        share.running -= cost
        while share.waiting and (
            not share.running or share.running + share.waiting[0][1] <= self.limits.cost
        ):
            turn, next_cost = share.waiting.popleft()
            share.running += next_cost
            turn.set_result(None)
        if not share.running and not share.waiting and self._shares.get(caller) is share:
            del self._shares[caller]

    async def run(self, caller: str, cost: int, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` (a query or mutation of `caller` costing `cost`) admitted (counted in
        flight) and in the caller's share, within limits.timeout, its wait for a turn included;
        OperationTimeout when it takes longer."""
        timeout = self.limits.timeout
        with self.admitted(caller):
            try:
                return await within(self.in_share(caller, cost, operation), timeout)
            except asyncio.TimeoutError:
                log.warning(
                    "request %s: cut off after %gs (limits.timeout)", REQUEST_ID.get(), timeout
                )
                raise OperationTimeout(
                    f"the operation took longer than {timeout:g}s and was cut off (limits.timeout)"
                ) from None

    async def in_share(self, caller: str, cost: int, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` when `caller`'s operations running already and this one cost no more
        than limits.cost together (or it is the caller's only one); until then it waits behind
        the caller's earlier ones, first come first served. The gateway runs on one thread:
        this keeps one caller's work ahead of everyone else's request to one operation's worth."""
        share = self._shares.get(caller)
        if share is None:
            share = self._shares[caller] = _Share()
        if share.running and (share.waiting or share.running + cost > self.limits.cost):
            turn = asyncio.get_running_loop().create_future()
            share.waiting.append((turn, cost))
            try:
                await turn  # the one that hands over the turn counts this cost in
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release(caller, share, cost)  # the turn came as it was cancelled
                else:
                    share.waiting.remove((turn, cost))
                    self._release(caller, share, 0)
                raise
        else:
            share.running += cost
        try:
            return await operation()
        finally:
            self._release(caller, share, cost)

    def check_answer(self, text: str) -> None:
        """Raise LimitExceeded if an answer (JSON: ASCII) is over limits.response_bytes."""
        if len(text) > self.limits.response_bytes:
            log.warning(
                "request %s: answer of %d bytes refused (limits.response_bytes)",
                REQUEST_ID.get(),
                len(text),
            )
            raise LimitExceeded(
                f"the answer is larger than {self.limits.response_bytes:,} bytes "
                "(limits.response_bytes); ask for fewer items or fields",
                "RESPONSE_TOO_LARGE",
            )

    def pace(self, caller: str, now: float | None = None) -> None:
        """Take one request from `caller`'s token bucket (limits.rate); TooManyRequests if empty."""
        rate = self.limits.rate
        if rate is None:
            return
        now = time.monotonic() if now is None else now
        refill = rate.requests / rate.per  # tokens per second
        kept = self._buckets.pop(caller, None)  # put back last: the dict stays in order of use
        tokens = float(rate.requests)
        if kept is not None:
            tokens = min(tokens, kept[0] + (now - kept[1]) * refill)
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            raise TooManyRequests(
                f"more than {rate.requests} requests in {rate.per:g}s from one "
                "caller (limits.rate); try again later",
                (1 - tokens) / refill,
            )
        self._buckets[caller] = (tokens - 1, now)
        # Forget callers idle long enough for their bucket to be full again, the oldest first
        # (two at most per request, so forgetting costs no more than remembering).
        for _ in range(2):
            oldest = next(iter(self._buckets))
            if now - self._buckets[oldest][1] < rate.per and len(self._buckets) <= MAX_CALLERS:
                break
            del self._buckets[oldest]

    @contextmanager
    def admitted(self, caller: str = "-") -> Iterator[None]:
        """Count one request in flight while the block runs; raise TooManyRequests if its caller
        has limits.per_caller_in_flight already, Busy if the gateway has limits.in_flight."""
        mine = self.callers.get(caller, 0)
        if mine >= self.limits.per_caller_in_flight:
            raise TooManyRequests(
                f"{mine} requests from this caller are in flight already "
                "(limits.per_caller_in_flight); try again shortly",
                1.0,
            )
        if self.in_flight >= self.limits.in_flight:
            raise Busy(
                f"the gateway is busy with {self.in_flight} requests (limits.in_flight); "
                "try again shortly"
            )
        self.in_flight += 1
        self.callers[caller] = mine + 1
        try:
            yield
        finally:
            self.in_flight -= 1
            left = self.callers.pop(caller) - 1
            if left:
                self.callers[caller] = left

    @contextmanager
    def connected(self, caller: str = "-") -> Iterator[SocketPlace]:
        """Count one WebSocket of `caller` open while the block runs (its place, which `move`
        counts under another caller); raise TooManyRequests if the caller has
        limits.websockets_per_caller open already, Busy if the gateway has limits.websockets."""
        self._check_sockets(caller)
        if self.connections >= self.limits.websockets:
            raise Busy(
                f"the gateway has {self.connections} WebSocket connections open "
                "(limits.websockets); try again shortly"
            )
        self.connections += 1
        self.sockets[caller] = self.sockets.get(caller, 0) + 1
        place = SocketPlace(self, caller)
        try:
            yield place
        finally:
            self.connections -= 1
            self._release_socket(place.caller)

    def _check_sockets(self, caller: str) -> None:
        mine = self.sockets.get(caller, 0)
        if mine >= self.limits.websockets_per_caller:
            raise TooManyRequests(
                f"{mine} WebSocket connections from this caller are open already "
                "(limits.websockets_per_caller); close one first",
                1.0,
            )

    def _release_socket(self, caller: str) -> None:
        left = self.sockets.pop(caller) - 1
        if left:
            self.sockets[caller] = left


class SocketPlace:
    """An open WebSocket's place among its caller's (RequestGate.connected). It is counted under
    the client's address when the socket opens, and under the caller's subject once
    connection_init has said who calls (`move`): a user is one caller wherever they connect
    from, and users behind one address (a proxy, an office) do not take each other's places."""

    def __init__(self, gate: RequestGate, caller: str) -> None:
        self.gate = gate
        self.caller = caller

    def move(self, caller: str) -> None:
        """Count the socket under `caller` from now on; TooManyRequests (the socket keeps its
        place where it was) if that caller has limits.websockets_per_caller open already."""
        if caller == self.caller:
            return
        self.gate._check_sockets(caller)
        self.gate._release_socket(self.caller)
        self.gate.sockets[caller] = self.gate.sockets.get(caller, 0) + 1
        self.caller = caller


def caller_key(address: str, subject: str | None = None) -> str:
    """The key per-caller limits count a request by: the subject of its token when it has one
    (a user is one caller wherever they connect from), else the client's address."""
    return f"sub:{subject}" if subject else address


def caller_of(peer: str | None, forwarded_for: str | None, trusted_proxies: tuple[Any, ...]) -> str:
    """Who a request comes from, for the per-caller limits: its peer address; when the peer is
    one of `trusted_proxies` (ip_network objects), the last X-Forwarded-For address that is no
    trusted proxy (proxies append the address they heard from, so earlier ones may be forged)."""
    address = peer or "-"
    if not trusted_proxies or not forwarded_for or not _trusted(address, trusted_proxies):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not _trusted(hop, trusted_proxies):
            return hop[:100] or address
        address = hop
    return address


def _trusted(address: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@dataclass
class _Definition:
    """What one operation or fragment selects by itself, and the fragments it spreads."""

    fields: int = 0
    aliases: int = 0
    depth: int = 0
    spreads: list[tuple[str, int]] = field(default_factory=list)  # (fragment, depth of the spread)


def check_query(query: str, limits: Limits) -> None:
    """Raise LimitExceeded if `query` is over a limit."""
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
                raise LimitExceeded(
                    f"a string in the query is longer than {limits.string_length} "
                    "characters (limits.string_length)"
                )
        if (
            top == "l"
            and (kind in ("string", "block", "name", "number") or text in ("$", "[", "{"))
            and previous != "$"
        ):
            lists[-1] += 1
            if lists[-1] > limits.list_length:
                raise LimitExceeded(
                    f"a list in the query has more than {limits.list_length} items "
                    "(limits.list_length)"
                )
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
                    raise LimitExceeded(
                        f"the query nests fields more than {limits.depth} levels deep "
                        "(limits.depth)"
                    )
                current.depth = max(current.depth, selection_depth)
        elif text in ("{", "(", "["):
            stack.append(_OPENING[text])
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
                        raise LimitExceeded(
                            f"the query selects more than {limits.fields} fields (limits.fields)"
                        )
        elif text == ":" and selecting and current is not None:
            aliases += 1
            current.aliases += 1
            if aliases > limits.aliases:
                raise LimitExceeded(
                    f"the query has more than {limits.aliases} aliases (limits.aliases)"
                )
        # Brackets of any kind nest the parser's recursion: bound them all, not only fields.
        if len(stack) > 2 * limits.depth + 2:
            raise LimitExceeded(
                f"the query nests brackets more than {2 * limits.depth + 2} levels deep "
                "(twice limits.depth, plus 2)"
            )
        before, previous = previous, text

    _check_expanded(operations, fragments, limits)


def _check_expanded(
    operations: list[_Definition], fragments: dict[str, _Definition], limits: Limits
) -> None:
    """Fragments spread in many places count each time: a few lines can select millions of
    fields."""
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
            raise LimitExceeded(
                f"with its fragments, the query nests fields more than {limits.depth} "
                "levels deep (limits.depth)"
            )
        if fields > limits.fields:
            raise LimitExceeded(
                f"with its fragments, the query selects more than {limits.fields} fields "
                "(limits.fields)"
            )
        if aliases > limits.aliases:
            raise LimitExceeded(
                f"with its fragments, the query has more than {limits.aliases} aliases "
                "(limits.aliases)"
            )


def check_text(
    query: str, variables: Any, operation_name: str | None = None, query_checked: bool = False
) -> None:
    """Refused (INVALID_TEXT) if the query, a variable (its name too) or the operation name
    holds a lone surrogate: JSON can carry one, UTF-8 cannot encode it, so nothing behind the
    gateway could take it. `query_checked`: the query passed this check before."""
    where = ""
    if not query_checked and _SURROGATE.search(query):
        where = "the query"
    elif operation_name and _SURROGATE.search(operation_name):
        where = "the operation name"
    else:
        pending = [variables]
        while pending and not where:
            value = pending.pop()
            if isinstance(value, str):
                where = "a variable" if _SURROGATE.search(value) else ""
            elif isinstance(value, list):
                pending.extend(value)
            elif isinstance(value, dict):
                pending.extend(value.values())
                pending.extend(value.keys())
    if where:
        raise Refused(
            f"{where} holds a lone surrogate (such as \\ud800 in JSON), which is not Unicode "
            "text; send text as UTF-8 or valid JSON escapes",
            "INVALID_TEXT",
        )


def check_variables(variables: Any, limits: Limits) -> None:
    """Raise LimitExceeded if a variable holds a string, list or nesting over the limits."""
    pending: list[tuple[Any, int]] = [(variables, 0)]
    while pending:
        value, depth = pending.pop()  # depth: of the lists and objects holding `value`
        if depth > limits.depth and isinstance(value, (list, dict)):
            raise LimitExceeded(
                f"a variable nests more than {limits.depth} levels deep (limits.depth)"
            )
        if isinstance(value, str) and len(value) > limits.string_length:
            raise LimitExceeded(
                f"a string variable is longer than {limits.string_length} characters "
                "(limits.string_length)"
            )
        if isinstance(value, list):
            if len(value) > limits.list_length:
                raise LimitExceeded(
                    f"a list variable has more than {limits.list_length} items (limits.list_length)"
                )
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
