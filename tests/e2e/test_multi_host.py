"""The contacts system on four hosts (network namespaces made by the test): Mosquitto and the
store on one, a writer each on two more (one group: they share the commands), the reader and
the gateway on a fourth; MQTT and gRPC over TLS, with logins, an ACL and client certificates.
Each host runs `cqrs-flow up multi_host.yaml --only ...`; the test is a client on the same
network. One writer host is killed mid-stream, and no
command answered OK is lost."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from certs import make_ca, needs_openssl
from hosts import Hosts
from system import SECRET, TOPOLOGIES, cli, mosquitto_binary, wait_until
from test_delivery import stream

TOPOLOGY = TOPOLOGIES / "multi_host.yaml"
HOSTS = {"data": "store", "w1": "writer-a", "w2": "writer-b", "front": "reader,gateway"}
STREAM = 1000

pytestmark = pytest.mark.skipif(
    Hosts.unavailable() is not None, reason=f"no test hosts: {Hosts.unavailable()}"
)


def wait_for(log: Path, pattern: str, timeout: float = 60.0) -> None:
    wait_until(
        lambda: re.search(pattern, log.read_text()) is not None, timeout=timeout, interval=0.1
    )


def graphql(url: str, query: str) -> dict:
    import urllib.request

    request = urllib.request.Request(
        url, json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer
    return answer["data"]


def secured_copy(directory: Path) -> Path:
    """The topology with gRPC over TLS and client certificates on every endpoint, certificates
    made for the hosts' addresses (the copy lives beside its tls/ folder)."""
    make_ca(directory / "tls", "ca", server_addresses=("10.77.0.1", "10.77.0.4"))
    data = yaml.safe_load(TOPOLOGY.read_text())
    repository = TOPOLOGY.resolve().parent.parent.parent
    for part in ("proto", "schema", "plugins"):  # a topology names files in its project only
        shutil.copytree(repository / part, directory / part, dirs_exist_ok=True)
    data["root"] = "."
    data["proto"] = "proto/contacts.proto"
    data["plugin_path"] = "."
    server = {
        "cert": "tls/server.pem",
        "key": "tls/server.key",
        "ca": "tls/ca.pem",
        "client_auth": True,
    }
    client = {"cert": "tls/node.pem", "key": "tls/node.key"}
    nodes = data["nodes"]
    nodes["store"]["write"]["tls"] = nodes["store"]["read"]["tls"] = nodes["reader"]["tls"] = server
    for name in ("writer-a", "writer-b", "reader", "gateway"):
        nodes[name]["client_tls"] = client
    nodes["gateway"]["schema"] = "schema/contacts.graphql"
    nodes["broker"]["url"] = "mqtts://10.77.0.1:8883"
    nodes["broker"]["tls"] = {"ca": "tls/ca.pem"}
    copy = directory / "multi_host.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


@needs_openssl
def test_four_hosts_run_the_system_and_lose_nothing_when_a_writer_host_dies(tmp_path):
    binary = mosquitto_binary()
    env = {**os.environ, "CQRS_FLOW_SECRET": SECRET}
    topology = secured_copy(tmp_path)
    # The broker's users and their topics, for this topology and secret.
    subprocess.run(
        [*cli(), "mosquitto-auth", str(topology), str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                "listener 8883 10.77.0.1",
                f"certfile {tmp_path / 'tls' / 'server.pem'}",
                f"keyfile {tmp_path / 'tls' / 'server.key'}",
                "allow_anonymous false",
                f"password_file {tmp_path / 'passwords'}",
                f"acl_file {tmp_path / 'acl'}",
                "max_queued_messages 0",
                "max_queued_bytes 0",
                "max_inflight_messages 0",
                *(["user root"] if os.geteuid() == 0 else []),
                "",
            ]
        )
    )
    with Hosts(list(HOSTS)) as hosts:
        logs = {host: tmp_path / f"{host}.log" for host in HOSTS}
        # Each process writes its log through a descriptor of its own; ours are closed at once.
        with open(tmp_path / "mosquitto.log", "w") as log:
            hosts.run("data", [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        for host, nodes in HOSTS.items():
            with open(logs[host], "w") as log:
                hosts.run(
                    host,
                    [*cli(), "up", str(topology), "--only", nodes],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        for host, nodes in HOSTS.items():
            count = len(nodes.split(","))
            wait_for(logs[host], rf"all {count} nodes ready on this host \(of 6\)")
        url = "http://10.77.0.4:8080/graphql"

        # The seed operations, from a client on the network.
        added = graphql(url, 'mutation { addContact(name: "Across four hosts") { status id } }')[
            "addContact"
        ]
        assert added["status"] == "OK"
        query = f'{{ contact(id: "{added["id"]}") {{ name }} }}'
        assert wait_until(lambda: graphql(url, query)["contact"]) == {"name": "Across four hosts"}
        graphql(
            url, f'mutation {{ updateContact(id: "{added["id"]}", name: "Moved") {{ status }} }}'
        )
        wait_until(lambda: graphql(url, query)["contact"] == {"name": "Moved"})
        graphql(url, f'mutation {{ deleteContact(id: "{added["id"]}") {{ status }} }}')
        wait_until(lambda: graphql(url, query)["contact"] is None)

        # A stream of mutations; one writer host dies (every process on it) a third of the way in.
        def kill_writer_host() -> None:
            pids = subprocess.run(
                ["ip", "netns", "pids", hosts.namespace["w1"]], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)

        began = time.monotonic()
        prefix = f"hosts-{uuid.uuid4().hex[:6]}"
        accepted = asyncio.run(stream("10.77.0.4:8080", STREAM, prefix, during=kill_writer_host))
        assert len(accepted) == STREAM  # the gateway's host never went down

        def stored() -> list[str]:
            return [
                c["id"]
                for c in graphql(url, "{ listContacts(count: 5000) { id } }")["listContacts"]
            ]

        wait_until(lambda: set(accepted) <= set(stored()), timeout=90, interval=0.5)
        ids = stored()
        assert len(ids) == len(set(ids)) == STREAM  # nothing lost, nothing twice
        w2 = logs["w2"].read_text()
        # the surviving host took over: its count of what it applied
        assert re.search(r"writer-b .*applied \d+ command\(s\) .*add_contact", w2)
        print(
            json.dumps(
                {
                    "hosts": len(HOSTS),
                    "accepted": len(accepted),
                    "applied": len(ids),
                    "lost": 0,
                    "twice": 0,
                    "seconds_to_all_applied": round(time.monotonic() - began, 1),
                }
            )
        )
