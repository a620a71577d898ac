"""Tokens for trying the library example: make a signing key of your own, then mint tokens.

    python examples/library/tokens.py keys              # once: keys/private.pem, keys/jwks.json
    python examples/library/tokens.py token ada member  # a member's token, valid 1 hour
    python examples/library/tokens.py token lee librarian --minutes 10

`keys` writes a new ES256 key pair: the private key to keys/private.pem (readable by you only;
never commit it: keys/.gitignore leaves it out) and its public half to keys/jwks.json, the JWKS
the gateway checks tokens against (topology.yaml, `auth.jwks`). The jwks.json shipped with the
example holds a public key nobody has the private key of, so no token verifies until you make
your own. `token` signs a token for SUBJECT with ROLE, for the issuer and audience the topology's
`auth` section names. Restart `cqrs-flow up` after `keys`: the gateway reads the JWKS file when
it starts. A real system gets its tokens from its identity provider instead (its JWKS URL in
`auth.jwks.url`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cqrs_flow.topology import load_topology

HERE = Path(__file__).resolve().parent
PRIVATE = HERE / "keys" / "private.pem"
JWKS = HERE / "keys" / "jwks.json"
KEY_ID = "library-dev"


def make_keys() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    PRIVATE.parent.mkdir(exist_ok=True)
    PRIVATE.unlink(missing_ok=True)
    descriptor = os.open(PRIVATE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    JWKS.write_text(json.dumps({"keys": [{**public, "kid": KEY_ID, "alg": "ES256", "use": "sig"}]}))
    print(f"wrote {PRIVATE} (keep it private) and {JWKS}; restart `cqrs-flow up` to use them")


def mint(subject: str, role: str, minutes: float) -> str:
    if not PRIVATE.exists():
        sys.exit(f"no {PRIVATE}: run `python {Path(__file__).name} keys` first")
    auth = load_topology(HERE / "topology.yaml").nodes["gateway"].auth  # type: ignore[attr-defined]
    now = int(time.time())
    claims = {
        "iss": auth.issuer,
        "aud": auth.audience[0],
        "sub": subject,
        auth.role_claim: role,
        "iat": now,
        "exp": now + int(minutes * 60),
    }
    return jwt.encode(claims, PRIVATE.read_bytes(), algorithm="ES256", headers={"kid": KEY_ID})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("keys", help="make a new signing key and the JWKS the gateway reads")
    token = commands.add_parser("token", help="print a token for SUBJECT with ROLE")
    token.add_argument("subject", help="the token's sub: a member's name, for instance")
    token.add_argument("role", help="visitor, member or librarian")
    token.add_argument("--minutes", type=float, default=60.0, help="how long it is valid")
    arguments = parser.parse_args()
    if arguments.command == "keys":
        make_keys()
    else:
        print(mint(arguments.subject, arguments.role, arguments.minutes))


if __name__ == "__main__":
    main()
