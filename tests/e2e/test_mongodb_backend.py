"""A store with `backend: mongodb`, through the real CLI: a URL in clear refused by validate, an
unreachable MongoDB stopping the store node with one clear line and a non-zero status, and,
when MONGODB_URL is set, two store processes sharing one collection behind a running system."""

from __future__ import annotations

import copy
import os
import subprocess
import uuid

import pytest
import yaml
from system import SECRET, System, cli, free_ports, prepare, wait_until

MONGODB_URL = os.environ.get("MONGODB_URL")
URL_VARIABLE = "CONTACTS_MONGODB_URL"


def mongodb_store(database: str = "cqrs_flow") -> dict:
    return {
        "nodes.store.backend": "mongodb",
        "nodes.store.mongodb": {"url": {"env": URL_VARIABLE}, "database": database},
    }


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*cli(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_validate_refuses_a_connection_url_written_in_clear(tmp_path):
    file = prepare(
        "contacts_fast.yaml",
        tmp_path,
        **{
            "nodes.store.backend": "mongodb",
            "nodes.store.mongodb": {"url": "mongodb://app:s3cret@db.internal:27017/"},
        },
    )
    result = run_cli("validate", str(file))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert (
        "nodes.store.mongodb.url: expected {env: NAME} or {file: path}, got a value written in "
        "clear" in output
    )
    assert "s3cret" not in output
    good = prepare("contacts_fast.yaml", tmp_path / "good", **mongodb_store())
    assert run_cli("validate", str(good)).returncode == 0


def test_a_store_that_cannot_reach_mongodb_stops_with_a_clear_error(tmp_path):
    file = prepare("contacts_fast.yaml", tmp_path, **mongodb_store())
    (port,) = free_ports(1)
    unreachable = f"mongodb://app:s3cret@127.0.0.1:{port}/?serverSelectionTimeoutMS=300"
    result = run_cli(
        "node", str(file), "store", env={URL_VARIABLE: unreachable, "CQRS_FLOW_SECRET": SECRET}
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"store store: MongoDB could not be reached at mongodb://***@127.0.0.1:{port}/" in output
    assert "s3cret" not in output
    result = run_cli("node", str(file), "store", env={URL_VARIABLE: "", "CQRS_FLOW_SECRET": SECRET})
    assert result.returncode != 0
    assert (
        f"nodes.store.mongodb.url is read from the environment variable {URL_VARIABLE}, which is "
        "not set" in (result.stdout + result.stderr)
    )


def _listeners(data: dict) -> list[dict]:
    """Every mapping with a `listen` key in the topology's nodes (services included)."""
    found = []
    for node in data["nodes"].values():
        for part in (node, node.get("write") or {}, node.get("read") or {}):
            if isinstance(part, dict) and "listen" in part:
                found.append(part)
    return found


def two_stores(tmp_path, database: str):
    """The test system with a second store node on the same MongoDB collection: the writer
    writes through one store process, the reader reads through the other."""
    file = prepare("contacts_fast.yaml", tmp_path, **mongodb_store(database))
    data = yaml.safe_load(file.read_text())
    second = copy.deepcopy(data["nodes"]["store"])
    second["collection"] = "store"  # the first store's collection (default: the node's name)
    taken = {int(str(node["listen"]).rsplit(":", 1)[-1]) for node in _listeners(data)}
    taken |= {
        int(str(node["metrics"]).rsplit(":", 1)[-1])
        for node in data["nodes"].values()
        if node.get("metrics")
    }
    write_port, read_port, metrics_port = free_ports(3)
    while {write_port, read_port, metrics_port} & taken:  # a port the copy chose: choose anew
        write_port, read_port, metrics_port = free_ports(3)
    second["write"]["listen"] = f"127.0.0.1:{write_port}"
    second["read"]["listen"] = f"127.0.0.1:{read_port}"
    second["metrics"] = f"127.0.0.1:{metrics_port}"
    data["nodes"]["store2"] = second
    data["nodes"]["reader"]["store"] = "store2.read"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    return file


def test_a_topology_with_two_stores_on_one_collection_validates(tmp_path):
    result = run_cli("validate", str(two_stores(tmp_path, "cqrs_flow")))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    not MONGODB_URL, reason="MONGODB_URL is not set: no MongoDB server to run against"
)
def test_two_store_processes_serve_one_collection(tmp_path):
    database = f"cqrs_flow_e2e_{uuid.uuid4().hex[:10]}"
    system = System(two_stores(tmp_path, database), env={URL_VARIABLE: MONGODB_URL}).start()
    try:
        added = system.data('mutation { addContact(name: "Ada") { status id } }')["addContact"]
        assert added["status"] == "OK"
        query = "query($id: String!) { contact(id: $id) { id name } }"
        # written by `store` (the writer's), read through `store2` (the reader's)
        found = wait_until(lambda: system.data(query, {"id": added["id"]})["contact"], timeout=15)
        assert found == {"id": added["id"], "name": "Ada"}
    finally:
        system.stop()
        from pymongo import MongoClient

        MongoClient(MONGODB_URL).drop_database(database)


def test_up_with_an_unreachable_mongodb_stops_with_the_stores_error(tmp_path):
    file = prepare("contacts_fast.yaml", tmp_path, **mongodb_store())
    (port,) = free_ports(1)
    result = run_cli(
        "up",
        str(file),
        env={
            URL_VARIABLE: f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300",
            "CQRS_FLOW_SECRET": SECRET,
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "node 'store' (store) exited with status 1 before it was ready" in output
    assert f"MongoDB could not be reached at mongodb://127.0.0.1:{port}/" in output
