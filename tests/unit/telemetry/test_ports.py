"""ports: a port in use, and who holds it."""

from __future__ import annotations

import errno
import os
import socket

from cqrs_flow.telemetry.ports import in_use, port_holder, taken
from cqrs_flow.telemetry.server import listen_error
from cqrs_flow.topology.model import Address


def test_the_process_listening_on_a_port_is_named():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert taken(Address("127.0.0.1", port))
        assert port_holder(port).startswith(f"pid {os.getpid()} (")
    assert not taken(Address("127.0.0.1", port))
    assert port_holder(port) is None


def test_without_proc_nothing_is_said(tmp_path):
    assert port_holder(80, proc=tmp_path) is None


def test_the_message_names_node_address_and_holder():
    error = OSError(errno.EADDRINUSE, "Address already in use")
    assert in_use(error)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        message = listen_error("gateway", "http", Address("127.0.0.1", port), error)
    assert message.startswith(
        f"node 'gateway' cannot listen on 127.0.0.1:{port} (http): port {port} is already in use "
        f"by pid {os.getpid()} ("
    )
    other = OSError(errno.EACCES, "Permission denied")
    assert listen_error("broker", "mqtt", Address("0.0.0.0", 80), other) == (
        "node 'broker' cannot listen on 0.0.0.0:80 (mqtt): Permission denied"
    )
