"""Throwaway certificates for the TLS tests, made with the openssl command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is not installed"
)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str, server_addresses: tuple[str, ...] = ("127.0.0.1",)) -> None:
    """`name`.pem / `name`.key: a CA; node.pem and server.pem (valid for `server_addresses`)
    signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *key,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        "-days",
        "1",
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        cwd=directory,
    )
    names = ",".join(f"IP:{address}" for address in server_addresses)
    for cert, extension in (
        ("server", f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n"),
        ("node", "extendedKeyUsage=clientAuth\n"),
    ):
        (directory / f"{cert}.ext").write_text(extension)
        openssl(
            "req",
            *key,
            "-keyout",
            f"{cert}.key",
            "-out",
            f"{cert}.csr",
            "-subj",
            f"/CN={cert}",
            cwd=directory,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{cert}.csr",
            "-CA",
            f"{name}.pem",
            "-CAkey",
            f"{name}.key",
            "-CAcreateserial",
            "-out",
            f"{cert}.pem",
            "-days",
            "1",
            "-extfile",
            f"{cert}.ext",
            cwd=directory,
        )
