"""Mosquitto's password and ACL files for a topology's broker (`cqrs-flow mosquitto-auth`).

The passwords are the ones the nodes log in with (cqrs_flow.security.mqtt_logins), hashed the way
`mosquitto_passwd` hashes them since Mosquitto 2.0: `$7$` PBKDF2-HMAC-SHA512. The ACL is the
topology's (cqrs_flow.topology.access): each user may read (subscribe to) and write (publish to)
only its own topics.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cqrs_flow.security.mqtt_logins import derive_mqtt_password
from cqrs_flow.topology.access import mqtt_access
from cqrs_flow.topology.model import BrokerNode, Topology

__all__ = [
    "ACL_FILE",
    "PASSWORD_FILE",
    "acl_text",
    "hash_password",
    "password_text",
    "write_auth_files",
]

PASSWORD_FILE = "passwords"
ACL_FILE = "acl"
ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A password hash in Mosquitto's `$7$iterations$salt$hash` format (PBKDF2-HMAC-SHA512)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_text(topology: Topology, broker: BrokerNode, secret: str) -> str:
    """One `user:hash` line per user of `broker`."""
    return "".join(
        f"{user}:{hash_password(derive_mqtt_password(secret, user))}\n"
        for user in sorted(mqtt_access(topology, broker))
    )


def acl_text(topology: Topology, broker: BrokerNode) -> str:
    """A Mosquitto ACL granting each user only the topics the topology gives it."""
    lines = [
        f"# MQTT access of the users of broker '{broker.name}' in {topology.source.name},",
        "# written by `cqrs-flow mosquitto-auth`. No user may do anything not listed here.",
        "",
    ]
    for user, access in sorted(mqtt_access(topology, broker).items()):
        lines.append(f"user {user}")
        both = [t for t in access.publish if t in access.subscribe]
        lines += [f"topic readwrite {t}" for t in both]
        lines += [f"topic write {t}" for t in access.publish if t not in both]
        lines += [f"topic read {t}" for t in access.subscribe if t not in both]
        lines.append("")
    return "\n".join(lines)


def write_auth_files(
    topology: Topology, broker: BrokerNode, secret: str, directory: Path
) -> tuple[Path, Path]:
    """Write the password file and the ACL file into `directory`, both readable by their owner
    only (Mosquitto 2.0.16 and later warn about, and later versions refuse, files others can
    read)."""
    directory.mkdir(parents=True, exist_ok=True)
    passwords, acl = directory / PASSWORD_FILE, directory / ACL_FILE
    _replace(passwords, password_text(topology, broker, secret), 0o600)
    _replace(acl, acl_text(topology, broker), 0o600)
    return passwords, acl


def _replace(path: Path, text: str, mode: int) -> None:
    """Write `path` anew: a new file beside it (created, never opened through a link), then
    renamed over it, so whatever stood at `path` (a file, or a link planted to make us write
    elsewhere) is replaced, never written through or chmod'ed."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
