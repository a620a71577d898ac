"""Secrets read from where the topology points: a file others may read is refused."""

from __future__ import annotations

import os

import pytest

from cqrs_flow.errors import NodeError
from cqrs_flow.security.sources import read_source
from cqrs_flow.topology.model import SecretSource, Topology


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620], ids=lambda mode: f"{mode:04o}")
def test_a_secret_file_other_users_may_use_is_refused(tmp_path, mode):
    topology = Topology("t", tmp_path / "topology.yaml", (), {}, {})  # files: in tmp_path
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value-of-the-system\n")
    os.chmod(secret, mode)
    with pytest.raises(NodeError) as refused:
        read_source(SecretSource(file="secret"), topology, "secret")
    assert str(refused.value) == (
        f"the file secret (secret) may be read or changed by other users (mode {mode:04o}); "
        "make it readable by its owner only: chmod 600 secret"
    )
    assert "s3cret" not in str(refused.value)
    os.chmod(secret, 0o600)
    assert read_source(SecretSource(file="secret"), topology, "secret") == (
        "s3cret-value-of-the-system"
    )
    os.chmod(secret, 0o400)
    assert read_source(SecretSource(file="secret"), topology, "secret") == (
        "s3cret-value-of-the-system"
    )
