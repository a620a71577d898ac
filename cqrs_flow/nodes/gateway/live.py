"""Live subscriptions to entity changes: the subscription fields of a gateway's `subscriptions:`
(planned in cqrs_flow/contracts/documents.py), served over graphql-transport-ws.

A subscription's first message is the current state, read from the document service with the
log position of its snapshot (FindResponse.log_position): the document (`changed:`), or the
first page of those a filter matches (`changes:`). Then it follows the change feed (feed.py)
from exactly that position, so that every change after the state it showed comes, in order, and
none before. A client that comes back gives `after`, the position of the last message it saw,
and gets every change after it without a first message.

A filtered list tells a change when the document matches the filter after it (`matches: true`),
and, with `matches: false`, when a document that matched before it no longer does (deleted, or
changed out of the filter). The log says what a document was before each update and delete
(Change.previous), which decides. From a log that does not say, the gateway keeps which
documents it has shown, while there are at most KNOWN_KEYS of them; beyond that, and for a
subscription that resumed (whose client's documents it cannot know), every change of the
entity that does not match is told with `matches: false`, so that nothing a client holds can
stay behind. A client drops the key of such a message, whether it had it or not.

The caller's row rules (auth.py) hold here as for queries: the first message is read with them
as conditions of the store's query, and a change is told only about a document the caller may
see after it (the document) or saw before it (`matches: false`: it no longer may); a change of a
document the caller may see neither before nor after is not told at all. A change's `subject`
(who asked for it) is shown to that caller only, as commandStatus is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc
from google.protobuf.descriptor import Descriptor

from cqrs_flow.contracts.documents import SubscriptionPlan
from cqrs_flow.nodes.gateway.auth import GatewayAuth
from cqrs_flow.nodes.gateway.feed import ChangeFeed, LiveChange, Subscriber, failure_of
from cqrs_flow.nodes.gateway.finder import add_condition
from cqrs_flow.nodes.gateway.limits import LimitExceeded
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.plugins import CALLER
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.stores.base import BadQuery, Condition, Find
from cqrs_flow.stores.find import Indexes, Values, matches
from cqrs_flow.stores.find import plan as find_plan
from cqrs_flow.transport.rpc import ServiceClient

__all__ = ["KNOWN_KEYS", "Live"]

KNOWN_KEYS = 10_000  # documents a list subscription remembers showing (see the module)
MESSAGES = 1024  # values of recent change messages, shared by the subscribers they go to

Source = Callable[[Any, dict[str, Any], Any, Any], AsyncIterator[dict[str, Any]]]


class Live:
    """The sources of a gateway's live subscription fields (tartiflette's @Subscription): each
    yields the values of its field's messages."""

    def __init__(
        self,
        documents: ServiceClient,
        feed: ChangeFeed,
        refusal: Callable[[grpc.aio.AioRpcError], Exception],
        page_size: int,
        list_count: int,
        auth: GatewayAuth | None = None,
    ) -> None:
        self.documents = documents
        self.auth = auth or GatewayAuth()  # the caller's rules; none: no rules
        self.feed = feed
        self.refusal = refusal
        self.page_size = page_size
        self.list_count = list_count
        self._converters: dict[str, Callable[[Any], dict[str, Any]]] = {}
        self._messages: OrderedDict[tuple[str, int, bool, bool], dict[str, Any]] = OrderedDict()

    def source(self, plan: SubscriptionPlan) -> Source:
        return self._list(plan) if plan.many else self._one(plan)

    def _one(self, plan: SubscriptionPlan) -> Source:
        entity = plan.entity.name
        argument = plan.argument or plan.entity.key

        async def changed(
            parent: Any, args: dict[str, Any], ctx: Any, info: Any
        ) -> AsyncIterator[dict[str, Any]]:
            self.feed.admit()  # before the state is read for it
            key = args.get(argument)
            if not key:
                raise Refused(f"argument '{argument}' must not be empty", "INVALID_ARGUMENT")
            key = str(key)
            rows, me = self._rows(entity), _subject()
            after = await self._after(args)
            shown: bool | None = None  # whether the caller was shown the document: not known
            if after is None:
                response = await self._find(entity, keys=[key], where=rows)
                page = response.pages[0]
                document = self._data(plan, page.documents[0]) if page.documents else None
                after, shown = response.log_position, document is not None
                yield {plan.field: _current(after, key=key, document=document)}
            row_sets = plan_of(plan, rows).sets if rows else None
            select = _one_select(key, row_sets, plan.entity.key, shown)
            subscriber = Subscriber(entity, key, select, after, self.feed.limits.live_queue)
            async for change, shown_now in self.feed.follow(subscriber):
                yield self._message(plan.field, change, shown_now, me)

        return changed

    def _list(self, plan: SubscriptionPlan) -> Source:
        entity = plan.entity.name

        async def changes(
            parent: Any, args: dict[str, Any], ctx: Any, info: Any
        ) -> AsyncIterator[dict[str, Any]]:
            self.feed.admit()
            conditions = _conditions(args.get("where"))
            self.auth.check_filter(entity, [c.field for c in conditions])
            rows, me = self._rows(entity), _subject()
            conditions += rows
            try:
                planned = plan_of(plan, conditions)
            except BadQuery as exc:
                raise Refused(str(exc), "INVALID_ARGUMENT") from None
            first = self._first(args.get("first"))
            after = await self._after(args)
            known: set[str] | None = None  # None: tell every change that does not match
            if after is None:
                response = await self._find(entity, where=conditions, first=first)
                page = response.pages[0]
                documents = [self._data(plan, d) for d in page.documents]
                after = response.log_position
                known = {str(d.get(plan.entity.key, "")) for d in documents}
                yield {plan.field: _current(after, documents=documents, has_more=page.has_next)}
            select = _list_select(planned.sets, planned.key_field, known, strict=bool(rows))
            subscriber = Subscriber(entity, None, select, after, self.feed.limits.live_queue)
            async for change, shown in self.feed.follow(subscriber):
                yield self._message(plan.field, change, shown, me)

        return changes

    def _rows(self, entity: str) -> list[Condition]:
        """The conditions of the caller's row rules on `entity` (none without rules)."""
        return [Condition(f, "eq", (v,)) for f, v in self.auth.rows().get(entity, ())]

    def _message(
        self, field: str, change: LiveChange, shown: bool, me: str | None
    ) -> dict[str, Any]:
        """The value of a change's message, the same object for every subscriber it goes to (so
        that the message is executed once for all that ask the same: fanout.py); the one whose
        change it is (`me`, the caller's subject) sees who asked for it."""
        mine = bool(change.subject) and change.subject == me
        key = (field, change.position, shown, mine)
        value = self._messages.get(key)
        if value is None:
            value = self._messages[key] = {field: _message(change, shown, mine)}
            while len(self._messages) > MESSAGES:
                self._messages.popitem(last=False)
        return value

    async def _after(self, args: dict[str, Any]) -> int | None:
        """The position a client resumes after (checked against the log), or None."""
        text = args.get("after")
        if text is None:
            return None
        text = str(text).strip()
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise Refused(
                "argument 'after' is the position of a message of this subscription (a whole "
                f"number), not {str(args.get('after'))[:40]!r}",
                "INVALID_ARGUMENT",
            )
        after = int(text)
        try:
            info = await self.feed.changes.info()
        except grpc.aio.AioRpcError as exc:
            message, code, _ = failure_of(exc)
            raise Refused(message, code) from None
        if after > info.last:
            raise Refused(
                f"position {after} is beyond the change log's last one ({info.last}): it comes "
                "from another log (a store that lost its data?); subscribe without after for "
                "the current state",
                "OUT_OF_RANGE",
            )
        if info.first and after < info.first - 1:
            raise Refused(
                f"the changes after position {after} are no longer kept (the oldest kept is "
                f"{info.first}); subscribe without after for the current state",
                "OUT_OF_RANGE",
            )
        return after

    def _first(self, value: Any) -> int:
        """How many documents the first message of a list holds."""
        if value is None:
            return min(self.page_size, self.list_count)
        if value < 0:
            raise Refused("argument 'first' must be 0 or more", "INVALID_ARGUMENT")
        if value > self.list_count:
            raise LimitExceeded(
                f"argument 'first' is {value}; a first message holds at most {self.list_count} "
                "documents (limits.list_count)"
            )
        return int(value)

    async def _find(
        self,
        entity: str,
        keys: list[str] | None = None,
        where: list[Condition] | None = None,
        first: int | None = None,
    ) -> Any:
        """The document service's answer to one query (with the log position it was read at)."""
        request: Any = self.documents.request_class("Find")()
        query = request.queries.add()
        query.entity = entity
        query.keys.extend(keys or ())
        for condition in where or ():
            add_condition(query, condition.field, condition.op, list(condition.values))
        if first is not None:
            query.first = first
        try:
            return await self.documents.call("Find", request)
        except grpc.aio.AioRpcError as exc:
            raise self.refusal(exc) from None

    def _data(self, plan: SubscriptionPlan, document: bytes) -> dict[str, Any]:
        view = plan.entity
        convert = self._converters.get(view.name)
        if convert is None:
            descriptor = cast(Descriptor, view.document.DESCRIPTOR)
            convert = self._converters[view.name] = data_converter(descriptor)
        return convert(view.document.FromString(document))


def plan_of(plan: SubscriptionPlan, conditions: list[Condition]) -> Any:
    """The store's plan of a find with `conditions`: its checked conditions by field (`sets`),
    which a change's document is matched against as the store matches it; BadQuery."""
    view = plan.entity
    indexes = Indexes(view.key, tuple(f for f in view.indexes if f != view.key))
    return find_plan(Find(where=tuple(conditions)), indexes, view.name)


def _conditions(where: dict[str, Any] | None) -> list[Condition]:
    """The conditions of a `where` argument ({field: {op: value}})."""
    found = []
    for name, ops in (where or {}).items():
        for op, value in (ops or {}).items():
            if value is not None:
                values = tuple(value) if op == "in" else (value,)
                found.append(Condition(name, op, values))
    return found


def _subject() -> str | None:
    """The subject of the caller subscribing (None without a token)."""
    who = CALLER.get()
    return who.subject if who is not None else None


def _one_select(
    key: str, rows: dict[str, Values] | None, key_field: str, shown: bool | None
) -> Callable[[LiveChange], bool | None]:
    """What a subscription to one document makes of a change: True when it shows the document
    after it, False when the document is gone (deleted, or out of the caller's row rules, `rows`
    as the store matches them; None: no rules). `shown`: whether the first message showed the
    document (None: not known, a subscription that resumed)."""
    if rows is None:
        return lambda change: change.document is not None if change.key == key else None
    state = {"shown": shown}

    def visible(document: dict[str, Any] | None) -> bool:
        return document is not None and matches(rows, key, key_field, document)

    def select(change: LiveChange) -> bool | None:
        if change.key != key:
            return None
        if visible(change.document):
            state["shown"] = True
            return True
        was = visible(change.previous) if change.before_known else state["shown"]
        state["shown"] = False
        return False if was else None  # never a word of a document the caller may not see

    return select


def _list_select(
    sets: dict[str, Values], key_field: str, known: set[str] | None, strict: bool = False
) -> Callable[[LiveChange], bool | None]:
    """What a filtered list makes of a change (see the module): True when the document matches
    after it; False when it matched before it and does not any more (deleted, or changed out of
    the filter). Where the log says what a document was before a change, that decides; where it
    does not, the documents shown (`known`; None: they cannot be known) do. `strict` (the filter
    holds the caller's row rules): a change is never told when neither decides, since the
    document may be one the caller may not see."""
    state: dict[str, set[str] | None] = {"known": known}
    exact = False  # the log says what each document was before its change

    def select(change: LiveChange) -> bool | None:
        nonlocal exact
        if change.document is not None and matches(sets, change.key, key_field, change.document):
            shown = state["known"]
            if shown is not None and not exact:
                shown.add(change.key)
                if len(shown) > KNOWN_KEYS:
                    state["known"] = None
            return True
        if change.before_known:
            if change.op != "INSERT":
                exact, state["known"] = True, None  # no need to remember what was shown
            before = change.previous
            return (
                False
                if before is not None and matches(sets, change.key, key_field, before)
                else None
            )
        if exact:  # a change without its document before, from a log that gave them so far
            return None if strict else False
        shown = state["known"]
        if shown is None:
            return None if strict else False
        if change.key in shown:
            shown.discard(change.key)
            return False
        return None

    return select


def _current(
    position: int,
    key: str | None = None,
    document: dict[str, Any] | None = None,
    documents: list[dict[str, Any]] | None = None,
    has_more: bool | None = None,
) -> dict[str, Any]:
    """A subscription's first message: how things stood at `position`."""
    return {
        "op": "CURRENT",
        "position": str(position),
        "key": key,
        "document": document,
        "matches": document is not None or documents is not None,
        "documents": documents,
        "has_more": has_more,
        "command_id": None,
        "at": None,
        "subject": None,
    }


def _message(change: LiveChange, shown: bool, mine: bool = False) -> dict[str, Any]:
    """The message of a change: the document when the subscription shows it, else null; who
    asked for it when that is the subscriber (`mine`)."""
    return {
        "op": change.op,
        "position": str(change.position),
        "key": change.key,
        "document": change.document if shown else None,
        "matches": shown,
        "documents": None,
        "has_more": None,
        "command_id": change.command_id or None,
        "at": change.at or None,
        "subject": change.subject if mine else None,
    }
