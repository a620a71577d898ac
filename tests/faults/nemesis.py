"""The nemesis: faults on a seeded random schedule, one at a time, against a Cluster under a
workload, and the record of what each cost.

`schedule(seed, faults, count, hold)` draws `count` faults among those the machine allows (every
kind in each round, or every (fault, node) pair when there are enough), in an order the seed
decides: the same seed gives the same schedule. `run` starts the
workload's lanes, waits for a warm-up, then for each fault: applies it, holds it for its
duration, undoes it, and measures how long until every mutation answered OK so far is in the
store and every projection has caught up with the change log (the recovery); then the lanes
stop, and the whole history is checked against the store's documents, against its change log
(each accepted write in it once, in order, replaying to the store's documents), and each
projection's read model against the documents it is built from.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from checker import OK, Check, History, LogCheck, Violation, check, check_log
from cluster import Cluster
from storeview import UNREACHABLE, StoreView
from workload import Workload, read_documents, run_lanes, statuses

__all__ = ["FAULTS", "NETWORK_FAULTS", "Fault", "Report", "run", "schedule"]

# fault -> the node kinds it applies to
EVERY_KIND = ("broker", "store", "reader", "writer", "gateway", "projection")
FAULTS = {
    "kill": EVERY_KIND,
    "pause": EVERY_KIND,
    "partition": EVERY_KIND,
    "slow_link": EVERY_KIND,
    "lossy_link": EVERY_KIND,
    "reorder_link": EVERY_KIND,
    "disk_full": ("store", "gateway"),
    "slow_fsync": ("store", "gateway"),
}
NETWORK_FAULTS = ("partition", "slow_link", "lossy_link", "reorder_link")


@dataclass(frozen=True)
class Fault:
    kind: str
    node: str
    seconds: float  # how long it is held (a kill: how long before the next step)


@dataclass
class Outcome:
    fault: Fault
    started: float = 0.0
    healed: float = 0.0
    recovered: float | None = None  # seconds from healed until every OK mutation is in and
    # every projection has caught up with the log as it was then
    applied: float | None = None  # seconds from healed until every OK mutation was in
    accepted_by_then: int = 0
    during: dict[str, int] = field(default_factory=dict)  # mutations sent while it lasted
    violations: dict[str, int] = field(default_factory=dict)  # of those, found by the check
    refusals: dict[str, int] = field(default_factory=dict)  # their ERROR messages, counted
    note: str = ""


@dataclass
class Report:
    system: str
    seed: int
    layout: str
    skipped: dict[str, str]
    schedule: list[Fault]
    outcomes: list[Outcome] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    check: dict[str, int] = field(default_factory=dict)
    log: dict[str, int] = field(default_factory=dict)  # the change log's check (LogCheck)
    projections: dict[str, int] = field(default_factory=dict)  # node -> violations of its model
    violations: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)


def available(
    cluster: Cluster, only: tuple[str, ...] | None = None
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The faults this machine allows on this cluster (fault -> nodes), of those in `only` if
    given, and why not the others."""
    skipped: dict[str, str] = {}
    faults: dict[str, tuple[str, ...]] = {}
    for kind, kinds in FAULTS.items():
        if only is not None and kind not in only:
            continue
        if kind in NETWORK_FAULTS and cluster.network is not None:
            skipped[kind] = cluster.network
            continue
        if kind == "reorder_link" and cluster.netem is not None:
            skipped[kind] = cluster.netem
            continue
        if kind == "slow_link" and cluster.netem is not None:
            skipped["netem"] = f"{cluster.netem}; slow_link and lossy_link use tc tbf instead"
        if kind == "disk_full" and cluster.disks is not None:
            skipped[kind] = cluster.disks
            continue
        if kind == "slow_fsync" and cluster.fsync is not None:
            skipped[kind] = cluster.fsync
            continue
        faults[kind] = tuple(n for n in cluster.names if cluster.kinds[n] in kinds)
    return faults, skipped


def schedule(
    seed: int, faults: dict[str, tuple[str, ...]], count: int, hold: tuple[float, float]
) -> list[Fault]:
    """`count` faults in rounds, each in an order the seed decides: fewer than there are (fault,
    node) pairs, each round has every fault once, on a node drawn for it; else each round has
    every pair once."""
    rng = random.Random(seed)
    pairs = [(kind, node) for kind, nodes in sorted(faults.items()) for node in nodes]
    drawn: list[Fault] = []
    while len(drawn) < count:
        if count < len(pairs):
            round_ = [(kind, rng.choice(faults[kind])) for kind in sorted(faults)]
        else:
            round_ = list(pairs)
        rng.shuffle(round_)
        for kind, node in round_[: count - len(drawn)]:
            drawn.append(Fault(kind, node, round(rng.uniform(*hold), 1)))
    return drawn


async def _apply(cluster: Cluster, fault: Fault) -> None:
    act = {
        "kill": cluster.kill,
        "pause": cluster.pause,
        "partition": cluster.partition,
        "slow_link": cluster.slow_link,
        "lossy_link": cluster.lossy_link,
        "reorder_link": cluster.reorder_link,
        "disk_full": cluster.fill_disk,
        "slow_fsync": cluster.slow_fsync,
    }[fault.kind]
    await asyncio.to_thread(act, fault.node)


async def _heal(cluster: Cluster, fault: Fault) -> None:
    if fault.kind == "pause":
        await asyncio.to_thread(cluster.resume, fault.node)
    elif fault.kind in NETWORK_FAULTS:
        await asyncio.to_thread(cluster.heal_link, fault.node)
    elif fault.kind == "disk_full":
        await asyncio.to_thread(cluster.free_disk, fault.node)
    elif fault.kind == "slow_fsync":
        await asyncio.to_thread(cluster.heal_fsync, fault.node)


async def _settled(
    cluster: Cluster, workload: Workload, history: History, until: float, limit: float
) -> tuple[float | None, Check | None]:
    """Seconds from now until the store holds every mutation answered OK by `until` (None if
    not within `limit`), and the last check made."""
    began = time.monotonic()
    last: Check | None = None
    while time.monotonic() - began < limit:
        documents = await read_documents(cluster.url, workload)
        if documents is not None:
            last = check(history, documents, until=until)
            # a delete accepted but not applied yet shows as a document back ("twice")
            if not any(last.of(kind) for kind in ("lost", "order", "twice")):
                return time.monotonic() - began, last
        await asyncio.sleep(0.2)
    return None, last


async def _caught_up(view: StoreView, workload: Workload, limit: float) -> tuple[float | None, str]:
    """Seconds from now until every projection's read model stands at the last change of the
    entities it follows as the log has it now (None if not within `limit`), and why not."""
    began = time.monotonic()
    targets: dict[str, int] = {}
    why = ""
    while time.monotonic() - began < limit:
        try:
            for node, projected in workload.projections.items():
                if node not in targets:
                    targets[node] = await view.last_of(projected.follows)
            behind = {}
            for node in targets:
                position = await view.projection_position(view.projection(node))
                if position < targets[node]:
                    behind[node] = (position, targets[node])
            if not behind:
                return time.monotonic() - began, ""
            why = "; ".join(f"{n} at {p} of {t}" for n, (p, t) in behind.items())
        except UNREACHABLE as exc:
            why = f"the store: {exc}"[:200]
        await asyncio.sleep(0.2)
    return None, f"projection not caught up: {why}"


async def _store_checks(
    view: StoreView, workload: Workload, history: History, limit: float
) -> tuple[LogCheck | None, dict[str, list[Violation]]]:
    """The change log against the history and the store, and each projection's read model
    against the store, read again until they hold or `limit` seconds have passed (a projection
    may still be writing)."""
    began = time.monotonic()
    found: tuple[LogCheck | None, dict[str, list[Violation]]] = (None, {})
    while time.monotonic() - began < limit:
        try:
            log = await view.log()
            store = await view.documents(list(view.store.entities))
        except UNREACHABLE:
            await asyncio.sleep(0.5)
            continue
        logged = check_log(history, log, store, workload.fields)
        models = {
            node: projected.check(store[projected.follows[0]], store[projected.model])
            for node, projected in workload.projections.items()
        }
        found = (logged, models)
        if not logged.violations and not any(models.values()):
            break
        await asyncio.sleep(0.5)
    return found


def _count_during(outcome: Outcome, history: History, began: float) -> None:
    """What became of the mutations sent from the fault's start until all was applied again."""
    start = began + outcome.started
    end = began + outcome.healed + (outcome.recovered or 0.0)
    sent = [op for op in history.ops if start <= op.sent <= end]
    outcome.during = {
        "sent": len(sent),
        "ok": sum(op.outcome == OK for op in sent),
        "error": sum(op.outcome == "ERROR" for op in sent),
        "no_answer": sum(op.outcome == "LOST" for op in sent),
    }
    for op in sent:
        if op.outcome == "ERROR":
            reason = op.message[:120]
            outcome.refusals[reason] = outcome.refusals.get(reason, 0) + 1


async def run(
    cluster: Cluster,
    workload: Workload,
    system: str,
    seed: int,
    count: int,
    hold: tuple[float, float] = (1.0, 3.0),
    warm_up: float = 3.0,
    recovery_limit: float = 30.0,
    lanes: int = 6,
    only: tuple[str, ...] | None = None,
    say: Any = print,
) -> Report:
    faults, skipped = available(cluster, only)
    drawn = schedule(seed, faults, count, hold)
    layout = "a host per node" if cluster.network is None else "one host (127.0.0.1)"
    report = Report(system, seed, layout, skipped, drawn)
    say(f"nemesis on {system}, seed {seed}, {layout}: {len(drawn)} faults")
    for kind, why in skipped.items():
        say(f"  not here: {kind}: {why}")
    view = StoreView(cluster.file)
    history = History()
    stop = asyncio.Event()
    began = time.monotonic()
    lanes_task = asyncio.ensure_future(
        run_lanes(cluster.url, workload, history, stop, seed, lanes=lanes)
    )
    try:
        await asyncio.sleep(warm_up)
        for fault in drawn:
            outcome = Outcome(fault, started=time.monotonic() - began)
            await _apply(cluster, fault)
            await asyncio.sleep(fault.seconds)
            await _heal(cluster, fault)
            healed = time.monotonic()
            outcome.healed = healed - began
            outcome.accepted_by_then = sum(
                1
                for op in history.ops
                if op.outcome == OK and op.answered and op.answered <= healed
            )
            outcome.recovered, last = await _settled(
                cluster, workload, history, healed, recovery_limit
            )
            if outcome.recovered is None and last is not None:
                outcome.note = "; ".join(v.text for v in last.violations[:3])
            outcome.applied = outcome.recovered
            if workload.projections and outcome.recovered is not None:
                caught_up, why = await _caught_up(view, workload, recovery_limit)
                if caught_up is None:
                    outcome.recovered, outcome.note = None, why
                else:
                    outcome.recovered = time.monotonic() - healed
            report.outcomes.append(outcome)
            shown = (
                f"NOT within {recovery_limit:g}s"
                if outcome.recovered is None
                else f"{outcome.recovered:.2f}s"
            )
            projected = (
                f" (in the store {outcome.applied:.2f}s)"
                if workload.projections and outcome.applied is not None
                else ""
            )
            say(
                f"  {fault.kind:10} {fault.node:10} held {fault.seconds:.1f}s: all accepted "
                f"applied{' and projected' if workload.projections else ''} {shown} after it "
                f"ended{projected}"
            )
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(lanes_task, 60)
    ended = time.monotonic()
    _, final = await _settled(cluster, workload, history, ended, recovery_limit)
    documents = await read_documents(cluster.url, workload)
    result = check(history, documents or {}, until=ended) if documents is not None else final
    report.counts = history.counts()
    for outcome in report.outcomes:  # now that every answer is in
        _count_during(outcome, history, began)
        if outcome.refusals:
            say(f"  refused during {outcome.fault.kind} {outcome.fault.node}: {outcome.refusals}")
    if result is not None:
        report.check = result.summary()
        report.violations = [f"{v.kind}: {v.text}" for v in result.violations[:50]]
        for violation in result.violations:  # to the fault it happened during, if any
            for outcome in report.outcomes:
                start = began + outcome.started
                end = began + outcome.healed + (outcome.recovered or 0.0)
                if violation.op is not None and start <= violation.op.sent <= end:
                    outcome.violations[violation.kind] = (
                        outcome.violations.get(violation.kind, 0) + 1
                    )
    logged, models = await _store_checks(view, workload, history, recovery_limit)
    found: list[Violation] = [] if logged is None else list(logged.violations)
    if logged is None:
        report.violations.append("log: the store's change log could not be read")
    else:
        report.log = logged.summary()
    for node, wrong in models.items():
        report.projections[node] = len(wrong)
        found += wrong
        report.violations += [f"{node}: {v.text}" for v in wrong[:20]]
    report.violations += [f"{v.kind}: {v.text}" for v in found if v.kind != "projection"][:50]
    for violation in found:
        for outcome in report.outcomes:
            start = began + outcome.started
            end = began + outcome.healed + (outcome.recovered or 0.0)
            if violation.op is not None and start <= violation.op.sent <= end:
                outcome.violations[violation.kind] = outcome.violations.get(violation.kind, 0) + 1
    accepted = [op.command_id for op in history.ops if op.outcome == OK and op.command_id]
    states = await statuses(cluster.url, accepted)
    report.statuses = {
        state or "unknown": sum(1 for s in states.values() if s == state)
        for state in sorted(set(states.values()), key=str)
    }
    report.seconds = round(time.monotonic() - began, 1)
    say(f"  history: {report.counts}; check: {report.check}; statuses: {report.statuses}")
    say(f"  change log: {report.log}; projections (violations): {report.projections}")
    for line in report.violations[:10]:
        say(f"  VIOLATION {line}")
    return report
