"""Who is calling, and what they may do: end-user tokens (JWT) verified at the gateway, the
caller they make, and the topology's rules applied at run time (contracts/auth.py checked them).

Tokens. A request carries `Authorization: Bearer <JWT>` (a WebSocket: in connection_init's
payload). PyJWT does the cryptography; the gateway chooses the key and the algorithm: the
token's `alg` must be one of `auth.algorithms` (so `none`, and any algorithm not listed, is
refused before a key is looked at); HS256 is checked with the shared secret only, every other
algorithm with the JWKS key its `kid` names, of that algorithm. The JWKS is read from a file at
start, or fetched from its URL: cached for `jwks_max_age`, and fetched again when a token names
a key id it does not have, at most once per `jwks_min_interval` (a flood of made-up key ids
costs the issuer nothing). A token must have `exp`, `iss`, `aud` and `sub`, its issuer and an
audience of the topology's, and be within `exp`/`nbf` give or take `leeway`. A refusal is
UNAUTHENTICATED (401) with the reason (expired, wrong audience, ...), logged without the token.

The caller. A verified token makes a plugins.Caller (subject, role, claims, expiry), set in the
context variable plugins.CALLER for the request (resolver tasks inherit it); a request without a
token is the anonymous role's when the topology names one, else UNAUTHENTICATED. The key the
per-caller limits count by is the subject (limits.caller_key); the client's address without a
token.

The rules (per role, from the token's `role_claim`): before an operation runs, its root fields
and every field it selects (through fragments and relations) are checked against the role
(`authorize`): FORBIDDEN (403) names what the role may not run or see, never a document. While
it runs, the Finder adds the role's row rules to every query it sends (`rows`), so lists, counts,
lookups, relations and `exists` checks see only the caller's documents; a filter or order on a
hidden field is FORBIDDEN (`check_filter`); a mutation argument bound to a claim must equal it
(`check_values`); commandStatus answers only the caller's own commands (`sees`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import aiohttp
import jwt

from cqrs_flow.contracts.auth import AuthPlan, RolePlan, RowRule
from cqrs_flow.errors import NodeError, ProjectFileError
from cqrs_flow.nodes.gateway.limits import LimitExceeded, RequestGate, caller_key, check_query
from cqrs_flow.nodes.gateway.refusals import REQUEST_ID, Refused
from cqrs_flow.plugins import CALLER, Caller
from cqrs_flow.security.sources import read_source
from cqrs_flow.topology.model import Auth, Topology
from cqrs_flow.topology.paths import read_project_file

__all__ = [
    "FORBIDDEN",
    "UNAUTHENTICATED",
    "GatewayAuth",
    "Keys",
    "Tokens",
    "forbidden",
    "token_of_init",
    "unauthenticated",
]

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
MIN_SECRET_BYTES = 32  # an HS256 key at least as long as its hash (RFC 7518, 3.2)
MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT = 5.0
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
_META_FIELDS = ("__typename", "__schema", "__type")

log = logging.getLogger("cqrs_flow.gateway")


def unauthenticated(message: str) -> Refused:
    return Refused(message, UNAUTHENTICATED, status=401)


def forbidden(message: str) -> Refused:
    """A rule's refusal, logged as it is made (one warning line: the request id and what the
    role may not do; never the token)."""
    log.warning("request %s: forbidden: %s", REQUEST_ID.get(), message)
    return Refused(message, FORBIDDEN, status=403)


# -- keys ---------------------------------------------------------------------------------------


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


def token_of_init(payload: Any) -> str | None:
    """The token of a graphql-transport-ws connection_init payload: its `Authorization` (or
    `authorization`) entry, with or without `Bearer `, or its `token` entry."""
    if not isinstance(payload, Mapping):
        return None
    for name in ("Authorization", "authorization", "token"):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            return bearer(value) if " " in value.strip() else value.strip()
    return None


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one. Refused for
    another scheme."""
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("send the token as Authorization: Bearer <token>")
    return token.strip()


# -- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Operation:
    kind: str
    roots: tuple[str, ...]
    fields: frozenset[tuple[str, str]]  # (type, field) selected anywhere


class GatewayAuth:
    """One gateway's end-user authentication and rules. `plan` None: the gateway has no `auth`
    (every request is an anonymous caller with no rules)."""

    def __init__(
        self, plan: AuthPlan | None = None, tokens: Tokens | None = None, cache_size: int = 512
    ) -> None:
        self.plan = plan
        self.tokens = tokens
        self._operations = lru_cache(maxsize=cache_size)(self._compile)

    @property
    def enabled(self) -> bool:
        return self.plan is not None

    # -- who --

    async def identify(
        self, token: str | None, address: str, gate: RequestGate | None = None
    ) -> str:
        """Verify `token` (None: none given), make the caller of the request being served
        (plugins.CALLER, in this task and those it starts) and return the key per-caller limits
        count it by. Refused when the token is not valid, or a token is needed and none given;
        then the client's address is paced (gate.pace), so that bad tokens are throttled too."""
        try:
            who = await self._caller(token)
        except Refused as refused:
            if refused.code != FORBIDDEN:  # forbidden() logged its own
                log.warning(
                    "request %s: %s: %s", REQUEST_ID.get(), refused.code.lower(), refused.message
                )
            if gate is not None:
                gate.pace(address)
            raise
        CALLER.set(who)
        return caller_key(address, who.subject)

    async def _caller(self, token: str | None) -> Caller:
        if self.plan is None or self.tokens is None:
            return Caller()
        auth = self.plan.auth
        if token is None:
            if auth.anonymous is None:
                raise unauthenticated(
                    "this gateway needs a token: send Authorization: Bearer <JWT> (over "
                    "WebSocket: in connection_init's payload, as {Authorization: ...})"
                )
            return Caller(role=auth.anonymous)
        claims = await self.tokens.verify(token)
        expires = claims.get("exp")
        caller = Caller(
            subject=claims["sub"],
            claims=claims,
            expires=float(expires) if isinstance(expires, (int, float)) else None,
        )
        return replace(caller, role=self._role_of(caller))

    def _role_of(self, caller: Caller) -> str | None:
        assert self.plan is not None
        auth = self.plan.auth
        if not auth.roles:
            return None  # no rules: every valid token may do everything
        named = caller.claim(auth.role_claim)
        for role in named if isinstance(named, list) else [named]:
            if isinstance(role, str) and role in auth.roles:
                return role
        if auth.default_role is not None:
            return auth.default_role
        raise forbidden(
            f"the token's {auth.role_claim} claim names no role of this gateway "
            f"({', '.join(auth.roles)})"
        )

    def role(self) -> RolePlan | None:
        """The rules of the caller being served; None: no rules apply."""
        who = CALLER.get()
        if self.plan is None or who is None or who.role is None:
            return None
        return self.plan.roles.get(who.role)

    @staticmethod
    def subject() -> str:
        """The subject of the caller being served ("" without a token)."""
        who = CALLER.get()
        return who.subject or "" if who is not None else ""

    # -- before an operation runs --

    def authorize(
        self,
        gate: RequestGate,
        query: str,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> None:
        """Refuse (FORBIDDEN) an operation whose root fields or selected fields the caller's
        role may not run or see, and (LIMIT_EXCEEDED) one over the role's depth or cost. An
        operation of introspection alone is held to the gateway's limits only: a client's
        schema fetch nests deeper than a role's data queries need to."""
        role = self.role()
        if role is None or gate.costs is None:
            return
        operation = self._chosen(gate.costs, query, operation_name)
        if operation is None:
            return  # does not validate: the engine runs nothing and says why
        for root in operation.roots:
            if not role.may_run(operation.kind, root):
                raise forbidden(f"the role '{role.name}' may not run the {operation.kind} {root}")
        for owner, name in sorted(operation.fields):
            if name in role.hidden.get(owner, ()):
                raise forbidden(f"the role '{role.name}' may not see {owner}.{name}")
        if all(root in _META_FIELDS for root in operation.roots):
            return  # introspection alone: the schema, within the gateway's own limits
        where = f"auth.roles.{role.name}.limits"
        if role.depth is not None and role.depth < gate.limits.depth:
            try:
                check_query(query, replace(gate.limits, depth=role.depth))
            except LimitExceeded as exc:
                raise LimitExceeded(exc.message.replace("limits.depth", f"{where}.depth")) from None
        if role.cost is not None:
            cost = gate.costs.cost(query, operation_name, variables)
            if cost > role.cost:
                raise LimitExceeded(
                    f"the query costs {cost:,}, more than {role.cost:,} ({where}.cost): ask "
                    "for fewer items or fewer aliases"
                )

    def _chosen(self, costs: Any, query: str, operation_name: str | None) -> _Operation | None:
        operations = self._operations(costs, query)
        if operation_name is None and len(operations) == 1:
            return next(iter(operations.values()))
        return operations.get(operation_name) if operation_name is not None else None

    @staticmethod
    def _compile(costs: Any, query: str) -> dict[str | None, _Operation]:
        """Each operation of a query text: its kind, root fields and every (type, field) it
        selects, fragments followed (by the document `costs` parses, aliases seen through)."""
        document = costs.parse(query)
        if document is None:
            return {}
        schema = costs.schema
        fragments = {
            d.name.value: d
            for d in document.definitions
            if type(d).__name__ == "FragmentDefinitionNode"
        }

        def walk(selection_set: Any, parent: Any, seen: frozenset[str]) -> Iterator[Any]:
            """(parent type, field node) for every field selected under `selection_set`."""
            for node in selection_set.selections:
                kind = type(node).__name__
                if kind == "FragmentSpreadNode":
                    fragment = fragments.get(node.name.value)
                    if fragment is not None and node.name.value not in seen:
                        inner = schema.find_type(fragment.type_condition.name.value)
                        yield from walk(fragment.selection_set, inner, seen | {node.name.value})
                elif kind == "InlineFragmentNode":
                    condition = node.type_condition
                    inner = schema.find_type(condition.name.value) if condition else parent
                    yield from walk(node.selection_set, inner, seen)
                elif kind == "FieldNode":
                    yield parent, node
                    name = node.name.value
                    if node.selection_set is not None and name not in _META_FIELDS:
                        returns = parent.find_field(name).graphql_type
                        while returns.is_wrapping_type:
                            returns = returns.wrapped_type
                        yield from walk(node.selection_set, schema.find_type(returns.name), seen)

        operations: dict[str | None, _Operation] = {}
        for definition in document.definitions:
            if type(definition).__name__ != "OperationDefinitionNode":
                continue
            kind = definition.operation_type
            root = schema.find_type(
                {
                    "query": schema.query_operation_name,
                    "mutation": schema.mutation_operation_name,
                    "subscription": schema.subscription_operation_name,
                }[kind]
            )
            selected = list(walk(definition.selection_set, root, frozenset()))
            roots = tuple(n.name.value for p, n in selected if p is root)
            fields = frozenset((p.name, n.name.value) for p, n in selected)
            name = definition.name.value if definition.name else None
            operations[name] = _Operation(kind, roots, fields)
        return operations

    # -- while it runs --

    def rows(self) -> dict[str, list[tuple[str, Any]]]:
        """entity -> (field, value) conditions the caller's documents meet (its role's row
        rules, with the token's claims); the Finder adds them to every query it sends."""
        role = self.role()
        if role is None or not role.rows:
            return {}
        who = CALLER.get()
        assert who is not None
        return {
            entity: [(rule.field, _claim_value(who, rule, role, entity)) for rule in rules]
            for entity, rules in role.rows.items()
        }

    def check_filter(self, entity: str, fields: list[str]) -> None:
        """FORBIDDEN when a list filters or orders on a field the caller may not see."""
        role = self.role()
        hidden = role.hidden.get(entity, frozenset()) if role is not None else frozenset()
        for name in fields:
            if role is not None and name in hidden:
                raise forbidden(
                    f"the role '{role.name}' may not filter or order on {entity}.{name}"
                )

    def check_values(self, mutation: str, arguments: Mapping[str, Any]) -> None:
        """FORBIDDEN when a mutation argument the role binds to a claim differs from it."""
        role = self.role()
        bound = role.values.get(mutation) if role is not None else None
        if not bound or role is None:
            return
        who = CALLER.get()
        assert who is not None
        for argument, claim in bound.items():
            wanted = who.claim(claim)
            given = arguments.get(argument)
            if wanted is None or given is None or str(given) != str(wanted):
                raise forbidden(
                    f"the role '{role.name}' may run {mutation} only with {argument} equal to "
                    f"its token's {claim}"
                )

    def sees(self, entry: Mapping[str, Any] | None) -> bool:
        """Whether the caller may see a command's status: its own, or one without a subject
        when the gateway has no `auth`."""
        if entry is None or self.plan is None:
            return True
        return (entry.get("subject") or "") == self.subject()


def _claim_value(who: Caller, rule: RowRule, role: RolePlan, entity: str) -> Any:
    """The token's claim a row rule compares, as the field's kind; FORBIDDEN without one."""
    value = who.claim(rule.claim)
    if rule.kind == "Boolean":
        fits = isinstance(value, bool)
    elif rule.kind == "Int":
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif rule.kind == "Float":
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if fits else value
    else:
        fits = isinstance(value, (str, int)) and not isinstance(value, bool)
        value = str(value) if fits else value
    if not fits:
        raise forbidden(
            f"the role '{role.name}' sees {entity} documents by the token's {rule.claim} "
            f"claim, which this token {'does not have' if value is None else 'has of another type'}"
        )
    return value
