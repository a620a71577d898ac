"""End-user tokens (JWT) as the gateway verifies them: its keys (the shared secret, a JWKS from a
file or a URL) and the verification of a token's signature and claims (auth.py says what is
checked and why). A module of its own: only a gateway whose topology has `auth` imports PyJWT
and the cryptography behind it (about a tenth of a second of the gateway's start-up)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt

from cqrs_flow.errors import NodeError, ProjectFileError
from cqrs_flow.nodes.gateway.auth import unauthenticated
from cqrs_flow.security.sources import read_source
from cqrs_flow.topology.model import Auth, Topology
from cqrs_flow.topology.paths import read_project_file

__all__ = ["Keys", "Tokens", "parse_jwks"]

MIN_SECRET_BYTES = 32  # an HS256 key at least as long as its hash (RFC 7518, 3.2)
MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT = 5.0
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]

log = logging.getLogger("cqrs_flow.gateway")


async def fetch_url(url: str) -> bytes:
    """The body of a GET of `url` (a JWKS), at most MAX_JWKS_BYTES, within FETCH_TIMEOUT."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, allow_redirects=False) as response,
    ):
        response.raise_for_status()
        body = await response.content.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"more than {MAX_JWKS_BYTES} bytes")
        return body


def parse_jwks(raw: bytes) -> dict[str, jwt.PyJWK]:
    """The public keys of a JWKS document by key id ("" for a key without one); symmetric keys
    and keys PyJWT cannot use are left out. ValueError if it holds no usable key."""
    try:
        document = json.loads(raw)
        keys = jwt.PyJWKSet.from_dict(document).keys
    except (ValueError, UnicodeDecodeError, jwt.PyJWTError, AttributeError, TypeError) as exc:
        raise ValueError(f"not a JWKS with usable keys ({exc})") from None
    found = {
        key.key_id or "": key
        for key in keys
        if key.algorithm_name != "HS256" and key.key_type != "oct"
    }
    if not found:
        raise ValueError("the JWKS holds no public key")
    return found


class Keys:
    """The keys tokens are checked against: a JWKS (from its file, or its URL, cached) and the
    HS256 secret. `fetch` and `clock` are seams for tests."""

    def __init__(
        self,
        auth: Auth,
        secret: bytes | None = None,
        jwks: bytes | None = None,
        fetch: Callable[[str], Awaitable[bytes]] = fetch_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.auth = auth
        self.secret = secret
        self.fetch = fetch
        self.clock = clock
        self.keys: dict[str, jwt.PyJWK] = parse_jwks(jwks) if jwks is not None else {}
        self.fetched: float | None = None  # when the URL was last read successfully
        self.tried: float | None = None  # when a fetch of the URL last started
        self.fetches = 0
        self._fetching: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, auth: Auth, topology: Topology, where: str) -> Keys:
        """The keys of a gateway's `auth` section: the JWKS file read and the secret read now;
        NodeError says what is wrong (`where`: its key path, for the message)."""
        secret = None
        if auth.secret is not None:
            secret = read_source(auth.secret, topology, f"{where}.secret").encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise NodeError(
                    f"the HS256 secret ({where}.secret) is {len(secret)} bytes; it needs at "
                    f"least {MIN_SECRET_BYTES} (e.g. openssl rand -hex 32)"
                )
        jwks = None
        if auth.jwks_file is not None:
            try:
                jwks = read_project_file(topology, auth.jwks_file, MAX_JWKS_BYTES, "JWKS file")
                parse_jwks(jwks)
            except (ProjectFileError, ValueError) as exc:
                raise NodeError(f"{where}.jwks: {auth.jwks_file}: {exc}") from None
        return cls(auth, secret, jwks)

    async def start(self) -> None:
        """Fetch the JWKS URL once before serving; a failure is logged, and fetched again when
        a token needs it."""
        if self.auth.jwks_url is not None:
            await self._refresh()

    async def key(self, algorithm: str, kid: str | None) -> Any:
        """The key to check a token of `algorithm` naming `kid` with; Refused (UNAUTHENTICATED)
        when there is none."""
        if algorithm == "HS256":
            assert self.secret is not None, "validate: HS256 comes with a secret"
            return self.secret
        url = self.auth.jwks_url
        if url is not None and (
            self.fetched is None or self.clock() - self.fetched > self.auth.jwks_max_age
        ):
            await self._refresh()
        found = self._find(algorithm, kid)
        if found is None and url is not None and kid is not None and kid not in self.keys:
            await self._refresh()  # a key the issuer added since: at most once per interval
            found = self._find(algorithm, kid)
        if found is None:
            if kid is None:
                raise unauthenticated(
                    f"the token names no key (kid) and the JWKS has no single {algorithm} key"
                )
            raise unauthenticated("the token is signed with a key this gateway does not know")
        return found.key

    def _find(self, algorithm: str, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            key = self.keys.get(kid)
            return key if key is not None and key.algorithm_name == algorithm else None
        fitting = [k for k in self.keys.values() if k.algorithm_name == algorithm]
        return fitting[0] if len(fitting) == 1 else None

    async def _refresh(self) -> None:
        """Fetch the JWKS URL again, unless a fetch started within jwks_min_interval; concurrent
        callers share one fetch. A failed fetch keeps the keys there were."""
        if self._fetching is not None:
            await asyncio.shield(self._fetching)
            return
        now = self.clock()
        if self.tried is not None and now - self.tried < self.auth.jwks_min_interval:
            return
        self.tried = now
        self._fetching = asyncio.ensure_future(self._fetch())
        try:
            await asyncio.shield(self._fetching)
        finally:
            self._fetching = None

    async def _fetch(self) -> None:
        url = self.auth.jwks_url
        assert url is not None
        self.fetches += 1
        try:
            self.keys = parse_jwks(await self.fetch(url))
            self.fetched = self.clock()
            log.info("read %d key(s) from the JWKS at %s", len(self.keys), url)
        except (OSError, ValueError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning(
                "cannot read the JWKS at %s: %s; %s",
                url,
                exc or type(exc).__name__,
                "keeping the keys read before" if self.keys else "tokens are refused until it can",
            )


# -- tokens -------------------------------------------------------------------------------------


class Tokens:
    """Verifies end-user tokens against `keys` and the topology's `auth` (see the module)."""

    def __init__(self, auth: Auth, keys: Keys) -> None:
        self.auth = auth
        self.keys = keys

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; Refused (UNAUTHENTICATED) saying why it is not one."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("the token is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.auth.algorithms:
            raise unauthenticated(
                f"the token's algorithm ({str(algorithm)[:20]!r}) is not accepted here "
                f"(accepted: {', '.join(self.auth.algorithms)})"
            )
        kid = header.get("kid")
        key = await self.keys.key(algorithm, kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=list(self.auth.audience),
                issuer=self.auth.issuer,
                leeway=self.auth.leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthenticated("the token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("the token is not meant for this gateway (aud)") from None
        except jwt.InvalidIssuerError:
            raise unauthenticated("the token is not from the issuer this gateway trusts") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthenticated(f"the token has no '{exc.claim}' claim") from None
        except jwt.InvalidSignatureError:
            raise unauthenticated("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"the token is invalid ({type(exc).__name__})") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise unauthenticated("the token's 'sub' claim is not a string")
        return claims
