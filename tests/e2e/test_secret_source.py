"""The system secret read from a file the topology names: every credential derives from it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from system import SECRET, System, prepare

from cqrs_flow.launcher.probes import mqtt_connack_code
from cqrs_flow.security.mqtt_logins import MqttLogin, derive_mqtt_password
from cqrs_flow.security.tokens import Credentials, derive_token

FILE_SECRET = "f1le-secret-" + "0123456789abcdef" * 2


def test_up_reads_the_secret_from_the_file_the_topology_names(tmp_path):
    file = prepare("contacts_fast.yaml", tmp_path, **{"secret": {"file": "keys/secret"}})
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "secret").write_text(FILE_SECRET + "\n")
    (tmp_path / "keys" / "secret").chmod(0o600)
    system = System(file, env={"CQRS_FLOW_SECRET": ""}).start()  # no secret in the environment
    try:
        assert FILE_SECRET not in system.output()
        broker = system.topology.nodes["broker"].listen
        assert (
            asyncio.run(
                mqtt_connack_code(
                    broker, MqttLogin("observer", derive_mqtt_password(FILE_SECRET, "observer"))
                )
            )
            == 0
        )
        assert (
            asyncio.run(
                mqtt_connack_code(
                    broker, MqttLogin("observer", derive_mqtt_password(SECRET, "observer"))
                )
            )
            == 5
        )

        store = system.topology.nodes["store"].read
        request = system.protos.message_class("contacts.GetContactRequest")(id="nobody")

        def get(token: str):
            with grpc.insecure_channel(store.listen.target) as channel:
                call = channel.unary_unary(
                    "/contacts.ContactReadService/GetContact",
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=lambda b: b,
                )
                return call(request, metadata=Credentials("reader", token).metadata, timeout=5)

        with pytest.raises(grpc.RpcError) as missing:
            get(derive_token(FILE_SECRET, "reader"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # let in, and nothing there
        with pytest.raises(grpc.RpcError) as refused:
            get(derive_token(SECRET, "reader"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        system.stop()


def test_up_refuses_a_short_secret_from_the_environment_as_from_a_file(tmp_path):
    file = prepare("contacts_fast.yaml", tmp_path)
    system = System(file, env={"CQRS_FLOW_SECRET": "x"})
    try:
        with pytest.raises(
            AssertionError,
            match="the system secret from environment variable "
            "CQRS_FLOW_SECRET is shorter than 16 characters",
        ):
            system.start()
        assert system.stop(None) == 1
    finally:
        system.stop()


def test_up_refuses_a_secret_file_other_users_may_read(tmp_path):
    file = prepare("contacts_fast.yaml", tmp_path, **{"secret": {"file": "secret"}})
    (tmp_path / "secret").write_text(FILE_SECRET + "\n")
    (tmp_path / "secret").chmod(0o644)
    system = System(file, env={"CQRS_FLOW_SECRET": ""})
    try:
        with pytest.raises(
            AssertionError,
            match=r"the file secret \(secret\) may be read or changed by other users "
            r"\(mode 0644\); make it readable by its owner only: chmod 600 secret",
        ):
            system.start()
        assert system.stop(None) == 1
        assert FILE_SECRET not in system.output()
    finally:
        system.stop()
