"""MQTT over TLS on the embedded broker: nodes log in over it, plain text gets no answer."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from certs import make_ca, needs_openssl
from system import System, prepare, wait_until

from cqrs_flow.launcher.probes import mqtt_connack_code

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def on_tls_broker(tmp_path_factory) -> System:
    directory = tmp_path_factory.mktemp("mqtt-tls")
    make_ca(directory / "tls", "ca")
    file = prepare(
        "contacts_fast.yaml",
        directory,
        **{
            "nodes.broker.tls": {
                "cert": "tls/server.pem",
                "key": "tls/server.key",
                "ca": "tls/ca.pem",
            }
        },
    )
    system = System(file).start()
    yield system
    system.stop()


def test_the_system_runs_over_mqtt_tls(on_tls_broker):
    assert (
        "MQTT broker listening on" in on_tls_broker.output()
        and "over TLS" in on_tls_broker.output()
    )
    added = on_tls_broker.data('mutation { addContact(name: "Tilly Essel") { id } }')["addContact"][
        "id"
    ]
    query = f'{{ contact(id: "{added}") {{ name }} }}'
    assert wait_until(lambda: on_tls_broker.data(query)["contact"]) == {"name": "Tilly Essel"}


def test_plain_text_gets_no_connack_and_tls_with_the_ca_does(on_tls_broker):
    address = on_tls_broker.topology.nodes["broker"].listen
    login = on_tls_broker.mqtt_login("observer")
    assert asyncio.run(mqtt_connack_code(address, login)) is None
    trusted = ssl.create_default_context(cafile=str(on_tls_broker.file.parent / "tls" / "ca.pem"))
    assert asyncio.run(mqtt_connack_code(address, login, tls=trusted)) == 0


def test_a_client_that_does_not_trust_the_ca_refuses_the_broker(on_tls_broker):
    address = on_tls_broker.topology.nodes["broker"].listen
    assert (
        asyncio.run(
            mqtt_connack_code(
                address, on_tls_broker.mqtt_login("observer"), tls=ssl.create_default_context()
            )
        )
        is None
    )
