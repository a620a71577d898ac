"""MQTT access from the topology, and the logins derived from the system secret."""

from __future__ import annotations

import hashlib
import json

import pytest

from cqrs_flow.errors import NodeError
from cqrs_flow.security.mqtt_logins import (
    ENV_MQTT_PASSWORD,
    ENV_MQTT_USERS,
    MqttLogin,
    derive_mqtt_password,
    login_from_env,
    mqtt_launch_environment,
    users_from_env,
)
from cqrs_flow.security.tokens import ENV_SECRET, derive_token
from cqrs_flow.topology.access import MqttAccess, covers, mqtt_access

SECRET = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "allowed, requested, expected",
    [
        ("CONTACT/ADD", "CONTACT/ADD", True),
        ("CONTACT/+", "CONTACT/ADD", True),
        ("CONTACT/+", "CONTACT/+", True),
        ("CONTACT/+", "CONTACT/#", False),  # '#' reaches CONTACT/A/B, which '+' does not
        ("CONTACT/+", "CONTACT/A/B", False),
        ("CONTACT/+", "#", False),
        ("CONTACT/#", "CONTACT", True),  # '#' also matches its parent level
        ("CONTACT/#", "CONTACT/+/x", True),
        ("#", "anything/at/all", True),
        ("CONTACT/ADD", "CONTACT/+", False),
        ("CONTACT/ADD", "CONTACT", False),
    ],
)
def test_covers(allowed, requested, expected):
    assert covers(allowed, requested) is expected


def test_access_of_the_shipped_system(shipped):
    access = mqtt_access(shipped, shipped.nodes["broker"])
    assert access == {
        "gateway": MqttAccess(
            "gateway", ("CONTACT/ADD", "CONTACT/UPDATE", "CONTACT/DELETE"), ("contacts/status",)
        ),
        "writer": MqttAccess(
            "writer", ("contacts/status",), ("CONTACT/ADD", "CONTACT/UPDATE", "CONTACT/DELETE")
        ),
    }
    assert access["gateway"].may_publish("CONTACT/ADD") and not access["gateway"].may_publish(
        "contacts/status"
    )
    assert access["writer"].may_subscribe("CONTACT/ADD") and not access["writer"].may_subscribe(
        "CONTACT/+"
    )


def test_access_follows_filters_dead_letters_and_clients(edit, parse):
    topology = parse(
        edit(
            (
                "    listen: 127.0.0.1:1883\n",
                "    listen: 127.0.0.1:1883\n    clients:\n      dashboard: {subscribe: "
                "[contacts/status, dead/#]}\n",
            ),
            (
                "    commands: [add_contact, update_contact, delete_contact]\n",
                "    topics: [CONTACT/+]\n    dead_letter: dead/contacts\n",
            ),
        )
    )
    access = mqtt_access(topology, topology.nodes["broker"])
    assert access["writer"] == MqttAccess(
        "writer", ("contacts/status", "dead/contacts"), ("CONTACT/+",)
    )
    assert access["dashboard"] == MqttAccess("dashboard", (), ("contacts/status", "dead/#"))
    assert not access["dashboard"].may_publish("CONTACT/ADD")


def test_a_client_may_not_take_a_node_name(edit, problems_of):
    problems = problems_of(
        edit(
            (
                "    listen: 127.0.0.1:1883\n",
                "    listen: 127.0.0.1:1883\n    clients: {writer: {subscribe: '#'}}\n",
            )
        )
    )
    assert [(p.path, p.message.split(";")[0]) for p in problems] == [
        (
            "nodes.broker.clients.writer",
            "'writer' is the name of a node, which logs in to the broker as itself",
        )
    ]


def test_passwords_are_per_user_and_differ_from_grpc_tokens():
    password = derive_mqtt_password(SECRET, "writer")
    assert password == derive_mqtt_password(SECRET, "writer")
    assert password != derive_mqtt_password(SECRET, "gateway")
    assert password != derive_mqtt_password(SECRET + "x", "writer")
    assert password != derive_token(SECRET, "writer")


def test_up_gives_clients_their_password_and_the_broker_only_hashes(shipped):
    assert mqtt_launch_environment(shipped, "writer", SECRET) == {
        ENV_MQTT_PASSWORD: derive_mqtt_password(SECRET, "writer")
    }
    assert mqtt_launch_environment(shipped, "store", SECRET) == {}
    broker_env = mqtt_launch_environment(shipped, "broker", SECRET)
    users = json.loads(broker_env[ENV_MQTT_USERS])
    assert users == {
        user: hashlib.sha256(derive_mqtt_password(SECRET, user).encode()).hexdigest()
        for user in ("gateway", "writer")
    }
    assert SECRET not in broker_env[ENV_MQTT_USERS]
    assert users_from_env(shipped, shipped.nodes["broker"], broker_env) == users
    assert users_from_env(shipped, shipped.nodes["broker"], {ENV_SECRET: SECRET}) == users


def test_login_from_env(shipped):
    by_secret = login_from_env(shipped, "gateway", {ENV_SECRET: SECRET})
    assert by_secret == login_from_env(
        shipped, "gateway", mqtt_launch_environment(shipped, "gateway", SECRET)
    )
    assert by_secret.user == "gateway" and by_secret.password not in repr(by_secret)
    with pytest.raises(NodeError, match=r"no MQTT credentials.*CQRS_FLOW_SECRET"):
        login_from_env(shipped, "gateway", {})
    with pytest.raises(NodeError, match="CQRS_FLOW_MQTT_USERS must be a JSON object"):
        users_from_env(shipped, shipped.nodes["broker"], {ENV_MQTT_USERS: "[1]"})


def test_the_client_id_tag_depends_on_the_password():
    assert MqttLogin("w", "a").tag != MqttLogin("w", "b").tag
    assert "a" * 12 not in MqttLogin("w", "a" * 64).tag
