"""The client matrix, MQTT: Mosquitto's command-line clients (Debian's mosquitto-clients, which
.ci/run installs) against the embedded broker of a running system. MQTT 5 and MQTT 3.1 are
refused at once with the CONNACK for an unacceptable protocol version; MQTT 3.1.1 clients log
in with logins of their own (the broker's `clients`) and use the topics the topology gives
them: one watches the status topic, one publishes a command the writer applies."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from client_matrix import start_matrix, tool
from system import wait_until

pytestmark = pytest.mark.clients

LIST = "query ListContacts { listContacts(count: 50) { id name } }"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    tool("mosquitto_sub", "mosquitto-clients")
    system = start_matrix(tmp_path_factory, "mqtt-clients")
    yield system
    system.stop()


def connection(matrix, user: str, version: str) -> list[str]:
    """mosquitto_* arguments that connect as `user` with its password, speaking `version`."""
    broker = matrix.topology.nodes["broker"].listen
    login = matrix.mqtt_login(user)
    return [
        "-h",
        broker.connect_host,
        "-p",
        str(broker.port),
        "-V",
        version,
        "-u",
        login.user,
        "-P",
        login.password,
    ]


@pytest.mark.parametrize(
    "version, says",
    [
        ("mqttv5", "Unsupported Protocol Version"),
        ("mqttv31", "Connection Refused: unacceptable protocol version"),
    ],
)
def test_mqtt_5_and_3_1_clients_are_refused_at_once(matrix, version, says):
    started = time.monotonic()
    done = subprocess.run(
        [
            tool("mosquitto_sub", "mosquitto-clients"),
            *connection(matrix, "dashboard", version),
            "-t",
            matrix.topology.status_topic,
            "-C",
            "1",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode not in (0, 27), done  # 27: it waited for a message until -W
    assert says in done.stderr + done.stdout
    assert time.monotonic() - started < 5  # a CONNACK at once, not the client's own timeout
    assert not any("Traceback" in line for line in matrix.lines)


def test_a_mqtt_3_1_1_client_with_its_own_login_watches_the_status_topic(matrix):
    watch = subprocess.Popen(
        [
            tool("mosquitto_sub", "mosquitto-clients"),
            *connection(matrix, "dashboard", "mqttv311"),
            "-t",
            matrix.topology.status_topic,
            "-C",
            "1",
            "-W",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Commands until one's report reaches it: it prints nothing until then (and a pipe does not
    # say when it has subscribed), so the first report it gets may be of any of them.
    commands = []
    deadline = time.monotonic() + 30
    while watch.poll() is None and time.monotonic() < deadline:
        added = matrix.data('mutation { addContact(name: "Watched") { command_id } }')
        commands.append(added["addContact"]["command_id"])
        time.sleep(0.5)
    output, errors = watch.communicate(timeout=10)
    assert watch.returncode == 0, output + errors
    reports = json.loads(output)  # the writer's reports, a JSON list (one or more at a time)
    assert reports and all(r["id"] in commands for r in reports), (reports, commands)
    assert {(r["state"], r["command"]) for r in reports} == {("APPLIED", "add_contact")}


def test_a_mqtt_3_1_1_client_with_its_own_login_publishes_a_command(matrix, tmp_path):
    request = matrix.protos.message_class("contacts.AddContactRequest")(
        contact={"id": "mosquitto-pub-1", "name": "From mosquitto_pub"}
    )
    payload = tmp_path / "add-contact.bin"
    payload.write_bytes(request.SerializeToString())  # what a command on CONTACT/ADD is
    done = subprocess.run(
        [
            tool("mosquitto_pub", "mosquitto-clients"),
            *connection(matrix, "importer", "mqttv311"),
            "-t",
            matrix.topology.commands["add_contact"].topic,
            "-q",
            "1",
            "-f",
            str(payload),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done
    contact = {"id": "mosquitto-pub-1", "name": "From mosquitto_pub"}
    wait_until(lambda: contact in matrix.data(LIST)["listContacts"], timeout=15)


def test_a_wrong_password_is_refused(matrix):
    arguments = connection(matrix, "dashboard", "mqttv311")
    arguments[arguments.index("-P") + 1] = "not-the-password"
    done = subprocess.run(
        [tool("mosquitto_sub", "mosquitto-clients"), *arguments, "-t", "x", "-C", "1", "-W", "10"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode not in (0, 27)
    assert "not authorised" in (done.stderr + done.stdout).lower()
