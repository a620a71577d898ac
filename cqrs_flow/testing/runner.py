"""Running one case: a fresh system (system.py), its `given` steps, its `when` steps, each
followed by waiting until the system has settled, then its `then` checks (docs/TESTING.md).

Settled means: every command a gateway published or a step sent is received by a writer, none
is left in a writer's delay or being applied, every gateway has heard what became of each of
its commands, and every projection has handled the changes it follows. Time in a writer's delay
is virtual: while waiting, the runner moves the clock on to the next command due, so a case
costs what its work costs, not its delays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import gmqtt
from google.protobuf import json_format

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.nodes.gateway.service import GatewayService
from cqrs_flow.nodes.projection import ProjectionService
from cqrs_flow.nodes.store import StoreService
from cqrs_flow.nodes.writer import WriterService
from cqrs_flow.protobuf.messages import get_path, set_path
from cqrs_flow.security.mqtt_logins import login_from_env
from cqrs_flow.testing.cases import Case, Check, Step
from cqrs_flow.testing.clock import VirtualClock
from cqrs_flow.testing.match import contains, diff, substitute
from cqrs_flow.testing.system import Prepared, RunningSystem
from cqrs_flow.topology.model import BrokerNode, GatewayNode, StoreNode
from cqrs_flow.topology.problems import did_you_mean
from cqrs_flow.transport.mqtt import connect, new_client

__all__ = ["CaseFailed", "Outcome", "run_case"]

SETTLE_TIMEOUT = 10.0  # real seconds a step's commands have to be applied
RETRY_FOR = 1.0  # real seconds a failing check is tried again (status reports, projections)
MAX_DOCUMENTS = 100_000  # documents of one entity a store check reads
MAX_CHANGES = 100_000  # changes a change check reads


class CaseFailed(Exception):
    """A case that could not run as written (a step failed, the system did not settle)."""


@dataclass
class Outcome:
    """What became of one case."""

    case: Case
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # each check that failed, with its diff
    error: str | None = None  # the case could not run
    log: list[str] = field(default_factory=list)  # the nodes' warnings and errors meanwhile

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None


async def run_case(prepared: Prepared, case: Case) -> Outcome:
    """Run `case` against a fresh system of `prepared`'s topology."""
    outcome = Outcome(case)
    began = time.perf_counter()
    with _captured_log() as lines:
        system = RunningSystem(prepared, VirtualClock())
        try:
            await system.start()
            async with _Driver(system) as driver:
                await driver.run(case, outcome)
        except CaseFailed as exc:
            outcome.error = str(exc)
        except Exception as exc:  # the system could not start, a node failed
            outcome.error = f"{type(exc).__name__}: {exc}"
        finally:
            await system.stop()
    outcome.log = lines
    outcome.seconds = time.perf_counter() - began
    return outcome


class _LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


class _captured_log:
    """The nodes' warnings and errors during a case, kept to show with a failure instead of
    printed."""

    def __enter__(self) -> list[str]:
        self.handler = _LogLines()
        self.root = logging.getLogger()
        self.level = self.root.level
        self.root.addHandler(self.handler)
        self.root.setLevel(logging.WARNING)
        return self.handler.lines

    def __exit__(self, *_: object) -> None:
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)


class _Driver:
    """Acts on a running system as a case says and checks what it shows."""

    def __init__(self, system: RunningSystem) -> None:
        self.system = system
        self.topology = system.topology
        self.clock = system.clock
        gateways = self.topology.nodes_of(GatewayNode)
        self.gateway = gateways[0] if gateways else None
        self.captured: dict[str, Any] = {}
        self.answers: list[dict[str, Any]] = []  # one per when step
        self.callers: list[dict[str, Any] | None] = []  # the claims each when step sent, if any
        self.sent = 0  # commands steps published themselves
        self.ids = CommandClock()
        self.writers: list[WriterService] = system.of_kind(WriterService)
        self.gateways: list[GatewayService] = system.of_kind(GatewayService)
        self.stores: list[StoreService] = system.of_kind(StoreService)
        self.projections: list[ProjectionService] = system.of_kind(ProjectionService)
        self._base = (self._published(), self._received())
        self.mqtt: gmqtt.Client | None = None

    async def __aenter__(self) -> _Driver:
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.close()
        if self.mqtt is not None and self.mqtt.is_connected:
            await self.mqtt.disconnect()

    async def run(self, case: Case, outcome: Outcome) -> None:
        for step in case.given:
            answer = await self._act(step)
            if _refusal(answer) is not None:
                raise CaseFailed(f"{step.where} was refused: {_refusal(answer)}")
            await self._settle(step)
        for step in case.when:
            self.answers.append(await self._act(step))
            self.callers.append(substitute(step.options.get("as"), self.captured))
            if step.settles:
                await self._settle(step)
        failing = list(case.then)
        deadline = time.perf_counter() + RETRY_FOR
        while True:
            results = [(check, await self._check(check)) for check in failing]
            failing = [check for check, why in results if why is not None]
            if not failing or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.02)
        outcome.failures = [f"{check.where}: {why}" for check, why in results if why is not None]

    # -- steps ----------------------------------------------------------------------------------

    async def _act(self, step: Step) -> dict[str, Any]:
        value = substitute(step.value, self.captured)
        options = substitute(dict(step.options), self.captured)
        if step.kind == "mutation":
            answer = await self._graphql(value, options.get("variables"), options.get("as"))
            for name, path in options.get("capture", {}).items():
                self.captured[name] = _at(answer, path, step.where)
            return answer
        if step.kind == "publish":
            return await self._publish(value, options, step.where)
        if step.kind == "documents":
            await self._insert(value, step.where)
            return {}
        self.clock.advance(float(value))  # advance
        await asyncio.sleep(0.01)  # what woke runs: a command due is applied
        return {}

    async def _graphql(
        self, text: str, variables: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> dict[str, Any]:
        if self.gateway is None:
            raise CaseFailed("the topology has no gateway to send GraphQL to")
        headers = {}
        if claims is not None:
            if self.gateway.auth is None:
                raise CaseFailed(f"gateway '{self.gateway.name}' has no auth: 'as' means nothing")
            headers["Authorization"] = f"Bearer {self.system.prepared.token(self.gateway, claims)}"
        body = {"query": text, "variables": variables or {}}
        async with self.http.post(self.gateway.url, json=body, headers=headers) as response:
            answer: dict[str, Any] = await response.json(content_type=None)
        return answer

    async def _publish(self, topic: str, options: dict[str, Any], where: str) -> dict[str, Any]:
        plans = {t: p for w in self.writers for t, p in w.plans.items()}
        by_name = {p.name: t for t, p in plans.items()}
        topic = by_name.get(topic, topic)
        command_id = ""
        if "payload" in options:
            payload = str(options["payload"]).encode()
        else:
            plan = plans.get(topic)
            if plan is None:
                choices = [*by_name, *plans]
                raise CaseFailed(
                    f"{where}: no writer takes commands on '{topic}'{did_you_mean(topic, choices)}"
                )
            message = plan.request()
            try:
                json_format.ParseDict(options["message"], message)
            except json_format.ParseError as exc:
                raise CaseFailed(f"{where}.message: not a {plan.request.__name__}: {exc}") from None
            if plan.command_id_path and not get_path(message, plan.command_id_path):
                set_path(message, plan.command_id_path, self.ids.next_id())
            command_id = (
                str(get_path(message, plan.command_id_path)) if plan.command_id_path else ""
            )
            payload = message.SerializeToString()
        client = await self._mqtt()
        client.publish(topic, payload, qos=1)
        self.sent += 1
        return {"command_id": command_id} if command_id else {}

    async def _mqtt(self) -> gmqtt.Client:
        """A client of the broker that logs in as the gateway does (it may publish commands)."""
        if self.mqtt is None:
            who = self.gateway.name if self.gateway else self.writers[0].node.broker
            broker_name = self.gateway.broker if self.gateway else self.writers[0].node.broker
            broker = self.topology.nodes[broker_name]
            assert isinstance(broker, BrokerNode)
            self.mqtt = new_client(
                self.topology.name,
                f"{who}-cases",
                broker,
                persistent=False,
                login=login_from_env(self.topology, who),
            )
            await connect(self.mqtt, broker)
        return self.mqtt

    async def _insert(self, documents: dict[str, list[dict[str, Any]]], where: str) -> None:
        for entity_name, docs in documents.items():
            backend = self._backend(entity_name, where)
            key = self.topology.entities[entity_name].key
            for document in docs:
                if key not in document:
                    raise CaseFailed(f"{where}.documents.{entity_name}: a document without '{key}'")
                await backend.insert(str(document[key]), dict(document))

    def _backend(self, entity: str, where: str) -> Any:
        for store in self.stores:
            if entity in store.backends:
                return store.backends[entity]
        held = sorted(name for store in self.stores for name in store.backends)
        raise CaseFailed(f"{where}: no store holds '{entity}'{did_you_mean(entity, held)}")

    # -- settling -------------------------------------------------------------------------------

    async def _settle(self, step: Step) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT
        while True:
            waiting = await self._waiting()
            if not waiting:
                return
            if loop.time() > deadline:
                raise CaseFailed(
                    f"{step.where}: the system did not settle in {SETTLE_TIMEOUT:g}s: "
                    + "; ".join(waiting)
                )
            if self.clock.advance_to_next():
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.002)

    async def _waiting(self) -> list[str]:
        """What the system is still doing; empty once it has settled."""
        waiting = []
        published, received = self._published(), self._received()
        underway = (published - self._base[0]) + self.sent - (received - self._base[1])
        if underway > 0:
            waiting.append(f"{underway:g} command(s) not received by a writer")
        lanes = sum(len(w.lanes) for w in self.writers)
        if lanes:
            waiting.append(f"{lanes} command(s) in a writer's delay or being applied")
        unheard = sum(_depth(g) for g in self.gateways)
        if unheard:
            waiting.append(f"{unheard} command(s) a gateway has no report on yet")
        for projection in self.projections:
            if await self._behind(projection):
                waiting.append(f"projection '{projection.node.name}' has changes to handle")
        return waiting

    async def _behind(self, projection: ProjectionService) -> bool:
        target = self._store(projection.node.store.node)
        followed = self.topology.nodes[projection.node.follows]
        source = self._store(
            followed.name if isinstance(followed, StoreNode) else followed.store.node  # type: ignore[attr-defined]
        )
        state = await target.log_.state(projection.node.name)
        collections = [source.collections.collection_of[e] for e in projection.runner.follows]
        batch = await source.log_.read(state.position(), 1, collections)
        return bool(batch.changes)

    def _store(self, name: str) -> StoreService:
        return next(s for s in self.stores if s.node.name == name)

    def _published(self) -> float:
        return sum(_total(g.metrics.published) for g in self.gateways)

    def _received(self) -> float:
        return sum(_total(w.metrics.received) for w in self.writers)

    # -- checks ---------------------------------------------------------------------------------

    async def _check(self, check: Check) -> str | None:
        """Why `check` fails, or None if it passes."""
        value = substitute(check.value, self.captured)
        options = substitute(dict(check.options), self.captured)
        try:
            if check.kind == "store":
                return await self._check_store(value, options, check.where)
            if check.kind == "query":
                return await self._check_query(value, options)
            if check.kind == "change":
                return await self._check_change(value)
            index = options.get("when", -1)
            answer = self._answer(index, check.where)
            caller = self.callers[index]
            if check.kind == "answer":
                return _contains_or_diff(value, answer.get("data"), answer.get("errors"))
            if check.kind == "refused":
                if set(answer) == {"command_id"}:  # a command published: refused by a writer
                    answer = await self._status(answer["command_id"], caller)
                return self._check_refused(value, answer)
            return await self._check_status(value, options, answer, caller)
        except CaseFailed as exc:
            return str(exc)

    def _answer(self, index: int, where: str) -> dict[str, Any]:
        try:
            return self.answers[index]
        except IndexError:
            raise CaseFailed(
                f"there is no when step {index} (the case has {len(self.answers)})"
            ) from None

    async def _check_store(self, entity: str, options: dict[str, Any], where: str) -> str | None:
        documents = await self._backend(entity, where).list(MAX_DOCUMENTS)
        if "count" in options and len(documents) != options["count"]:
            return f"{entity}: {len(documents)} document(s), expected {options['count']}\n" + diff(
                options["count"], documents
            )
        for expected in options.get("holds", []):
            if not any(contains(expected, d) for d in documents):
                return f"{entity} holds no document matching it\n" + diff(expected, documents)
        for unwanted in options.get("lacks", []):
            found = [d for d in documents if contains(unwanted, d)]
            if found:
                return f"{entity} holds a document it should not\n" + diff(unwanted, found)
        if "exactly" in options and not (
            len(options["exactly"]) == len(documents) and contains(options["exactly"], documents)
        ):
            return f"{entity} holds other documents\n" + diff(options["exactly"], documents)
        return None

    async def _check_query(self, text: str, options: dict[str, Any]) -> str | None:
        answer = await self._graphql(text, options.get("variables"), options.get("as"))
        if "refused" in options:
            return self._check_refused(options["refused"], answer)
        if answer.get("errors"):
            return "the query was answered with errors\n" + diff(None, answer["errors"])
        if "returns" in options and answer.get("data") != options["returns"]:
            return "the query returned something else\n" + diff(options["returns"], answer["data"])
        if "contains" in options:
            return _contains_or_diff(options["contains"], answer.get("data"), None)
        return None

    def _check_refused(self, expected: Any, answer: dict[str, Any]) -> str | None:
        refusal = _refusal(answer)
        if refusal is None:
            return "it was not refused\n" + diff("a refusal", answer)
        want = {"message": expected} if isinstance(expected, str) else dict(expected or {})
        if want.get("message") and str(want["message"]) not in refusal["message"]:
            return "refused with another message\n" + diff(want, refusal)
        if want.get("code") and want["code"] != refusal.get("code"):
            return "refused with another code\n" + diff(want, refusal)
        return None

    async def _check_status(
        self,
        state: str,
        options: dict[str, Any],
        answer: dict[str, Any],
        caller: dict[str, Any] | None,
    ) -> str | None:
        command_id = _find(answer, "command_id")
        if not command_id:
            return "the step has no command id to ask the status of\n" + diff("command_id", answer)
        found = await self._status(command_id, caller)
        if found.get("state") != state:
            return "the command's status is another\n" + diff({"state": state}, found)
        if options.get("reason") and str(options["reason"]) not in (found.get("reason") or ""):
            return "another reason\n" + diff({"reason": options["reason"]}, found)
        return None

    async def _status(self, command_id: str, caller: dict[str, Any] | None) -> dict[str, Any]:
        """What a gateway tells `caller` (the one who sent the command: a gateway answers only
        a caller's own) became of a command: {state, reason}, or {} if it knows nothing."""
        status = await self._graphql(
            "query($id: String!) { commandStatus(id: $id) { state reason } }",
            {"id": command_id},
            caller,
        )
        return dict((status.get("data") or {}).get("commandStatus") or {})

    async def _check_change(self, expected: dict[str, Any]) -> str | None:
        changes = []
        for store in self.stores:
            batch = await store.log_.read(0, MAX_CHANGES, None)
            for change in batch.changes:
                entity = store.collections.entity_of.get(change.collection, change.collection)
                changes.append(
                    {
                        "entity": entity,
                        "collection": change.collection,
                        "key": change.key,
                        "op": change.op,
                        "command": change.command,
                        "document": change.document,
                        "previous": change.previous,
                    }
                )
        if any(contains(expected, c) for c in changes):
            return None
        return "no change in the log matches it\n" + diff(expected, changes[-20:])


def _depth(gateway: GatewayService) -> int:
    """Commands a gateway keeps in its outbox until a writer reports on them."""
    depth = gateway.telemetry.facts["queue_depth"]()
    return depth if isinstance(depth, int) else 0


def _total(counter: Any) -> float:
    """The sum of a labelled Prometheus counter over its labels."""
    return float(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


def _at(data: dict[str, Any], path: str, where: str) -> Any:
    """The value at dotted `path` (list items by number) of an answer's data."""
    value = data.get("data")
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise CaseFailed(
                f"{where}: nothing to capture at '{path}' in the answer\n{diff(path, data)}"
            )
    return value


def _find(value: Any, key: str) -> Any:
    """The first value under `key` anywhere in `value`."""
    if isinstance(value, dict):
        if value.get(key):
            return value[key]
        items = list(value.values())
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        found = _find(item, key)
        if found:
            return found
    return None


def _refusal(answer: dict[str, Any]) -> dict[str, Any] | None:
    """How an answer says no: its first GraphQL error, or a mutation result with status ERROR
    (its message); None if it does not."""
    errors = answer.get("errors")
    if errors:
        error = errors[0]
        code = (error.get("extensions") or {}).get("code")
        return {"message": str(error.get("message", "")), "code": code}
    for result in (answer.get("data") or {}).values():
        if isinstance(result, dict) and result.get("status") == "ERROR":
            return {"message": str(result.get("message", "")), "code": "ERROR"}
    if answer.get("state") == "FAILED":
        return {"message": str(answer.get("reason", "")), "code": "FAILED"}
    return None


def _contains_or_diff(expected: Any, data: Any, errors: Any) -> str | None:
    if contains(expected, data):
        return None
    extra = f"\nerrors: {errors}" if errors else ""
    return "the answer does not contain it\n" + diff(expected, data) + extra
