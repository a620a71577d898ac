"""Mosquitto's password and ACL files, the system secret they derive from, and their commands."""

from __future__ import annotations

import base64
import hashlib
import stat
from dataclasses import replace

import pytest
from click.testing import CliRunner

from cqrs_flow.cli import main
from cqrs_flow.errors import NodeError
from cqrs_flow.security.mosquitto import acl_text, hash_password, password_text
from cqrs_flow.security.mqtt_logins import derive_mqtt_password
from cqrs_flow.security.secret import read_secret, secret_variables
from cqrs_flow.security.tokens import ENV_SECRET, ENV_TOKEN

SECRET = "0123456789abcdef" * 4
SHORT = (
    "the system secret from {} is shorter than 16 characters; "
    "make a strong one, e.g. openssl rand -hex 32"
)


@pytest.fixture
def runner(proto_cache, monkeypatch) -> CliRunner:
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    return CliRunner()


def test_hash_password_is_mosquittos_pbkdf2_sha512_format():
    salt = bytes(range(12))
    line = hash_password("s3cret", salt=salt)
    kind, iterations, salt_text, digest_text = line.split("$")[1:]
    assert (kind, iterations, base64.b64decode(salt_text)) == ("7", "101", salt)
    assert base64.b64decode(digest_text) == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101, 64)
    assert hash_password("s3cret") != hash_password("s3cret")  # a fresh salt each time


def test_password_file_has_one_line_per_user_and_no_password_in_clear(shipped):
    text = password_text(shipped, shipped.nodes["broker"], SECRET)
    users = [line.split(":", 1)[0] for line in text.splitlines()]
    assert users == ["gateway", "writer"]
    assert derive_mqtt_password(SECRET, "writer") not in text and SECRET not in text


def test_acl_grants_each_user_its_topics_only(shipped):
    text = acl_text(shipped, shipped.nodes["broker"])
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == [
        "user gateway",
        "topic write CONTACT/ADD",
        "topic write CONTACT/UPDATE",
        "topic write CONTACT/DELETE",
        "topic read contacts/status",
        "user writer",
        "topic write contacts/status",
        "topic read CONTACT/ADD",
        "topic read CONTACT/UPDATE",
        "topic read CONTACT/DELETE",
    ]


def test_mosquitto_auth_writes_both_files(runner, tmp_path, monkeypatch):
    from ..helpers import SHIPPED

    monkeypatch.setenv(ENV_SECRET, SECRET)
    result = runner.invoke(main, ["mosquitto-auth", str(SHIPPED), str(tmp_path / "auth")])
    assert result.exit_code == 0, result.output
    passwords = tmp_path / "auth" / "passwords"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "auth" / "acl").stat().st_mode) == 0o600
    assert (
        "allow_anonymous false" in result.output and f"password_file {passwords}" in result.output
    )
    assert (tmp_path / "auth" / "acl").read_text().count("\nuser ") == 2
    assert SECRET not in result.output


def test_mosquitto_auth_needs_the_secret(runner, tmp_path):
    from ..helpers import SHIPPED

    result = runner.invoke(main, ["mosquitto-auth", str(SHIPPED), str(tmp_path)])
    assert result.exit_code == 1
    assert "set CQRS_FLOW_SECRET or the topology's 'secret'" in result.stderr


def test_mqtt_password_prints_a_users_password(runner, monkeypatch):
    from ..helpers import SHIPPED

    monkeypatch.setenv(ENV_SECRET, SECRET)
    result = runner.invoke(main, ["mqtt-password", str(SHIPPED), "gateway"])
    assert result.output.strip() == derive_mqtt_password(SECRET, "gateway")
    result = runner.invoke(main, ["mqtt-password", str(SHIPPED), "nobody"])
    assert (
        result.exit_code == 1
        and "'nobody' is not a user of broker 'broker'; users: gateway, writer" in result.stderr
    )


def test_mosquitto_auth_refuses_a_short_secret_from_the_environment(runner, tmp_path, monkeypatch):
    from ..helpers import SHIPPED

    monkeypatch.setenv(ENV_SECRET, "x")
    result = runner.invoke(main, ["mosquitto-auth", str(SHIPPED), str(tmp_path / "auth")])
    assert result.exit_code == 1
    assert result.stderr == f"error: {SHORT.format(f'environment variable {ENV_SECRET}')}\n"
    assert not (tmp_path / "auth").exists()


# -- the system secret --------------------------------------------------------------------------


def with_secret(edit, parse, source: str):
    return parse(edit(("proto:", f"secret: {source}\nproto:")))


def test_the_environment_wins_then_the_named_variable(edit, parse):
    topology = with_secret(edit, parse, "{env: MY_SECRET}")
    from_env = "from-env-" + SECRET
    assert read_secret(topology, {ENV_SECRET: from_env, "MY_SECRET": SECRET}) == from_env
    assert read_secret(topology, {"MY_SECRET": SECRET}) == SECRET
    assert secret_variables(topology) == (ENV_SECRET, "MY_SECRET")
    with pytest.raises(NodeError, match="environment variable MY_SECRET, which is not set"):
        read_secret(topology, {})
    with pytest.raises(NodeError, match="shorter than 16 characters"):
        read_secret(topology, {"MY_SECRET": "short"})


@pytest.mark.parametrize("short", ["x", SECRET[:15]])
def test_a_short_secret_is_refused_from_every_source(edit, parse, make_project, short):
    from cqrs_flow.topology import load_topology

    topology = with_secret(edit, parse, "{env: MY_SECRET}")
    with pytest.raises(NodeError) as from_environment:
        read_secret(topology, {ENV_SECRET: short, "MY_SECRET": SECRET})
    assert str(from_environment.value) == SHORT.format(f"environment variable {ENV_SECRET}")
    with pytest.raises(NodeError) as from_named_variable:
        read_secret(topology, {"MY_SECRET": short})
    assert str(from_named_variable.value) == SHORT.format("environment variable MY_SECRET")
    path = make_project(yaml=[("proto:", "secret: {file: keys/secret}\nproto:")])
    (path.parent / "keys").mkdir()
    (path.parent / "keys" / "secret").write_text(short + "\n")
    (path.parent / "keys" / "secret").chmod(0o600)
    with pytest.raises(NodeError) as from_file:
        read_secret(load_topology(path), {})
    assert str(from_file.value) == SHORT.format("file keys/secret")
    assert read_secret(topology, {ENV_SECRET: SECRET[:16]}) == SECRET[:16]  # 16 is enough


def test_a_secret_file_is_read_relative_to_the_topology(make_project):
    from cqrs_flow.topology import load_topology

    path = make_project(yaml=[("proto:", "secret: {file: keys/secret}\nproto:")])
    topology = load_topology(path)
    with pytest.raises(NodeError, match="cannot read secret from the file keys/secret"):
        read_secret(topology, {})
    (path.parent / "keys").mkdir()
    (path.parent / "keys" / "secret").write_text(SECRET + "\n")
    (path.parent / "keys" / "secret").chmod(0o600)
    assert read_secret(topology, {}) == SECRET
    assert read_secret(replace(topology, secret=None), {}) is None


@pytest.mark.parametrize(
    "source, message",
    [
        (
            "{file: ../secret}",
            "secret.file: ../secret leads out of the project directory",
        ),
        (
            "{file: /etc/secret}",
            "secret.file: '/etc/secret' is an absolute path; write it relative to the topology",
        ),
        (
            "{env: A, file: b}",
            "secret: expected exactly one of 'env' or 'file', got keys env, file",
        ),
        ("{}", "secret: expected exactly one of 'env' or 'file', got keys none"),
        (
            "s3cr3t-in-clear",
            "secret: expected {env: NAME} or {file: path}, got a value written in clear",
        ),
    ],
)
def test_secret_sources_that_are_refused(edit, problems_of, source, message):
    problems = problems_of(edit(("proto:", f"secret: {source}\nproto:")))
    assert [f"{p.path}: {p.message}".startswith(message) for p in problems] == [True], problems


def test_mosquitto_auth_replaces_a_planted_link_instead_of_writing_through_it(
    runner, tmp_path, monkeypatch
):
    """A link planted at DIR/passwords (or DIR/acl) must not make the command truncate, write
    or chmod the file it points at: the link is replaced by the new file."""
    from ..helpers import SHIPPED

    monkeypatch.setenv(ENV_SECRET, SECRET)
    auth = tmp_path / "auth"
    auth.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    (auth / "passwords").symlink_to(victim)
    (auth / "acl").symlink_to(victim)
    result = runner.invoke(main, ["mosquitto-auth", str(SHIPPED), str(auth)])
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    for name in ("passwords", "acl"):
        assert not (auth / name).is_symlink()
    assert stat.S_IMODE((auth / "passwords").stat().st_mode) == 0o600
    assert sorted(p.name for p in auth.iterdir()) == ["acl", "passwords"]  # no temporary left
