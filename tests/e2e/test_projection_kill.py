"""A projection killed with -9 at random points while changes flow resumes where its read model
stands: no change lost, none applied twice (tests/topologies/tally.py lists, for each loan, the
positions of the changes it handled)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import time
import uuid

import grpc
from changelog import read_log, stored
from gmqtt.mqtt.constants import MQTTv311
from system import TOPOLOGIES, System, acknowledged, prepare, wait_until
from test_example_library import EXAMPLE
from test_up_lifecycle import node_pid

LOANS = 80
KILLS = 4


def tally_system(tmp_path) -> System:
    """The library example with a second projection, `tally`, into an entity of its own."""
    example = (EXAMPLE / "topology.yaml").read_text()
    import yaml

    data = yaml.safe_load(example)
    entities = {
        **data["entities"],
        "LoanTally": {
            "document": "library.MemberLoans",
            "collection": "loan_tally",
            "key": "member",
        },
    }
    topology = prepare(
        "library.yaml",
        tmp_path,
        source=EXAMPLE / "topology.yaml",
        stop_timeout="3s",
        **{
            "entities": entities,
            "nodes.store.entities": [*data["nodes"]["store"]["entities"], "LoanTally"],
            "nodes.store.data": "store-data",
            "nodes.writer.delay": "0ms",
            "nodes.broker.clients": {"observer": {"publish": "#", "subscribe": "#"}},
            "nodes.tally": {
                "kind": "projection",
                "follows": "store.read",
                "store": "store.write",
                "entity": "LoanTally",
                "plugin": "tally.ChangeTally",
                "batch": 20,
            },
        },
    )
    shutil.copy(TOPOLOGIES / "tally.py", tmp_path / "tally.py")
    return System(topology)


def commands(system: System, rng: random.Random) -> list[tuple[str, bytes]]:
    """Loans lent, returned, lent again, removed: per loan in order, the loans interleaved."""
    message = system.protos.message_class
    lanes = []
    for i in range(LOANS):
        loan = message("library.Loan")(
            id=f"loan-{i:03d}-{uuid.uuid4().hex[:6]}",
            book_id=f"book-{i % 7}",
            member=f"member-{i % 5}",
            due=f"2027-01-{1 + i % 28:02d}",
        )
        lane = [("library/loans/add", message("library.AddLoanRequest")(loan=loan))]
        for returned in [True, False, True][: rng.randint(0, 3)]:
            changed = message("library.Loan")()
            changed.CopyFrom(loan)
            changed.returned = returned
            lane.append(
                ("library/loans/update", message("library.UpdateLoanRequest")(loan=changed))
            )
        if rng.random() < 0.3:
            lane.append(("library/loans/remove", message("library.RemoveRequest")(id=loan.id)))
        lanes.append(lane)
    out = []
    while any(lanes):
        lane = rng.choice([lane for lane in lanes if lane])
        topic, request = lane.pop(0)
        out.append((topic, request.SerializeToString()))
    return out


def test_a_projection_killed_under_load_loses_nothing_and_applies_nothing_twice(tmp_path):
    seed = int(time.time())
    rng = random.Random(seed)
    system = tally_system(tmp_path).start()
    planned = commands(system, rng)
    kills = sorted(rng.sample(range(20, len(planned) - 10, 25), KILLS))

    async def publish() -> None:
        broker = system.topology.nodes["broker"].listen
        client = system.mqtt_client(f"test-tally-{uuid.uuid4().hex[:6]}")
        await client.connect(broker.connect_host, broker.port, version=MQTTv311)
        killed = 0
        for i, (topic, payload) in enumerate(planned):
            if i in kills:  # once the tally runs again after the kill before, if any
                while sum("cqrs-flow | tally ready in" in line for line in system.lines) <= killed:
                    await asyncio.sleep(0.05)
                os.kill(node_pid(system, "tally"), signal.SIGKILL)
                killed += 1
            client.publish(topic, payload, qos=1)
            await asyncio.sleep(0.02)
        await acknowledged(client, timeout=60)
        await client.disconnect()

    def expected() -> dict[str, list[str]]:
        """For each loan, the positions of its changes in the store's log."""
        found: dict[str, list[str]] = {}
        for change in asyncio.run(read_log(system)).changes:
            if change.entity == "Loan":
                found.setdefault(change.key, []).append(str(change.position))
        return found

    def tallied() -> dict[str, list[str]]:
        try:
            rows = asyncio.run(stored(system, "LoanTally"))
        except grpc.aio.AioRpcError:
            return {}
        return {key: row["loans"] for key, row in rows.items()}

    try:
        asyncio.run(publish())
        restarts = lambda: sum(  # noqa: E731
            "node 'tally' exited with status -9" in line for line in system.lines
        )
        wait_until(lambda: restarts() == KILLS, timeout=30)
        # Caught up once the store has applied every command and the tally has every change.
        wait_until(lambda: tallied() == expected() and expected(), timeout=60, interval=0.5)
        assert tallied() == expected(), f"seed {seed}"
        # The other projection, never killed, agrees with the loans the store holds.
        loans = asyncio.run(stored(system, "Loan"))
        members: dict[str, list[str]] = {}
        for loan in loans.values():
            if not loan["returned"]:
                members.setdefault(loan["member"], []).append(loan["id"])
        wait_until(
            lambda: (
                {
                    k: sorted(v["loans"])
                    for k, v in asyncio.run(stored(system, "MemberLoans")).items()
                }
                == {k: sorted(v) for k, v in members.items()}
            ),
            timeout=20,
        )
    finally:
        assert system.stop() == 0
