"""Figure 6: write throughput with Mosquitto as an external broker (figure 1 again).

Mosquitto (Debian's, /usr/sbin/mosquitto) runs with examples/contacts-mosquitto/mosquitto.conf
on a free port with its own persistence folder; the system is examples/contacts-mosquitto's
topology (`url:` + `protocol: "5"`: the writer acknowledges a command once it is applied) with
a delay of 0. The hand-wired floor and the raw broker rate use the same Mosquitto, over MQTT 5.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.common import MOSQUITTO_EXAMPLE, Figure, free_ports, prepare
from bench.fig1_write import measure


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def start_mosquitto(directory: Path, binary: str) -> tuple[subprocess.Popen, int]:
    from cqrs_flow.launcher.probes import mqtt_connack
    from cqrs_flow.topology import Address

    directory.mkdir(parents=True, exist_ok=True)
    port = free_ports(1)[0]
    config = (MOSQUITTO_EXAMPLE / "mosquitto.conf").read_text()
    config = config.replace("listener 1885 127.0.0.1", f"listener {port} 127.0.0.1")
    config = config.replace(" mosquitto/", f" {directory}/")  # its relative paths, here
    # The hand-wired floors measured on the same broker have no logins: no password file or ACL
    # here (the nodes' logins are then accepted as they are).
    config = "\n".join(
        line
        for line in config.splitlines()
        if not line.startswith(("password_file", "acl_file", "allow_anonymous"))
    )
    config += "\nallow_anonymous true\n"
    if os.geteuid() == 0:
        config += (
            "user root\n"  # as root, Mosquitto would switch to its own user and lose the folder
        )
    (directory / "mosquitto.conf").write_text(config)
    with open(directory / "mosquitto.log", "w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [binary, "-c", str(directory / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if asyncio.run(mqtt_connack(Address("127.0.0.1", port))):
            return process, port
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(
        "Mosquitto did not start: " + (directory / "mosquitto.log").read_text()[-2000:]
    )


def stop_mosquitto(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def run(ctx) -> Figure:
    fig = Figure(6, "Write throughput with Mosquitto")
    binary = mosquitto_binary()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    process, port = start_mosquitto(ctx.tmp / "mosquitto", binary)
    try:
        file = prepare(
            MOSQUITTO_EXAMPLE / "topology.yaml",
            ctx.tmp / "fig6",
            {
                "nodes.broker.url": f"mqtt://127.0.0.1:{port}",
                "nodes.writer.delay": "0s",
                "nodes.store.list_limit": 10_000_000,
            },
        )
        asyncio.run(measure(fig, ctx, file, port, "5", "Mosquitto"))
    finally:
        stop_mosquitto(process)
    return fig
