"""End-user tokens and rules at the gateway (auth.py): which tokens verify, how the JWKS URL is
cached and fetched again, the caller plugins see, the rules before an operation runs, and the
per-caller limits counting by the token's subject."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from tartiflette import Resolver, create_engine

from cqrs_flow.contracts.auth import AuthPlan, RolePlan
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.gateway.auth import GatewayAuth, bearer, token_of_init
from cqrs_flow.nodes.gateway.cost import Costs
from cqrs_flow.nodes.gateway.http import GraphQLHttp
from cqrs_flow.nodes.gateway.limits import RequestGate
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.nodes.gateway.tokens import Keys, Tokens
from cqrs_flow.plugins import CALLER, Caller, caller
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import Auth, Limits, Rate, SecretSource

from ...helpers import ROOT

ISSUER, AUDIENCE = "https://issuer.example", "app"
SECRET = b"s" * 32
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.OKPAlgorithm
    return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid, "alg": alg}


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


AUTH = Auth(
    issuer=ISSUER,
    audience=(AUDIENCE,),
    algorithms=("ES256", "EdDSA", "HS256"),
    leeway=0.0,
    secret=SecretSource(env="APP_JWT_SECRET"),
)


def token(key: Any = EC_KEY, alg: str = "ES256", kid: str | None = "ec", **claims: Any) -> str:
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ada", "exp": int(time.time()) + 60, **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def verify(tokens: Tokens, text: str) -> dict[str, Any]:
    return asyncio.run(tokens.verify(text))


def refusal(tokens: Tokens, text: str) -> str:
    with pytest.raises(Refused) as refused:
        verify(tokens, text)
    assert refused.value.code == "UNAUTHENTICATED" and refused.value.status == 401
    return refused.value.message


@pytest.fixture
def tokens() -> Tokens:
    keys = Keys(AUTH, SECRET, jwks(jwk(EC_KEY, "ec", "ES256"), jwk(ED_KEY, "ed", "EdDSA")))
    return Tokens(AUTH, keys)


def test_each_algorithm_verifies_with_its_own_key(tokens):
    assert verify(tokens, token())["sub"] == "ada"
    assert verify(tokens, token(ED_KEY, "EdDSA", "ed"))["sub"] == "ada"
    assert verify(tokens, token(SECRET, "HS256", None))["sub"] == "ada"
    # a key of another algorithm than the token says is not used
    assert "does not know" in refusal(tokens, token(ED_KEY, "EdDSA", "ec"))


def test_an_algorithm_not_configured_is_refused_before_any_key_is_tried():
    only_ec = Auth(issuer=ISSUER, audience=(AUDIENCE,), algorithms=("ES256",))
    tokens = Tokens(only_ec, Keys(only_ec, None, jwks(jwk(EC_KEY, "ec", "ES256"))))
    # HS256 signed with the public key's JWK text: the classic confusion, refused by algorithm
    public = jwks(jwk(EC_KEY, "ec", "ES256"))
    assert "algorithm ('HS256') is not accepted" in refusal(tokens, hmac_token(public))
    none = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x"}, None, algorithm="none")
    assert "algorithm ('none') is not accepted" in refusal(tokens, none)


def hmac_token(secret: bytes) -> str:
    """An HS256 token made by hand (PyJWT refuses to sign with a public key as the secret)."""
    encode = jwt.utils.base64url_encode
    header = encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "ec"}).encode())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "lee", "exp": int(time.time()) + 60}
    payload = encode(json.dumps(claims).encode())
    signature = hmac.new(secret, header + b"." + payload, hashlib.sha256).digest()
    return b".".join((header, payload, encode(signature))).decode()


def test_a_token_without_a_key_id_needs_the_jwks_to_have_one_key_of_its_algorithm(tokens):
    assert verify(tokens, token(kid=None))["sub"] == "ada"  # one ES256 key
    two = Keys(AUTH, SECRET, jwks(jwk(EC_KEY, "a", "ES256"), jwk(EC_KEY, "b", "ES256")))
    assert "names no key (kid)" in refusal(Tokens(AUTH, two), token(kid=None))


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        # times relative to when the test runs (not to when it was collected: minutes before)
        ({"exp": -1}, "expired"),
        ({"nbf": +3600}, "not valid yet"),
        ({"aud": "other"}, "not meant for this gateway"),
        ({"iss": "https://other.example"}, "issuer"),
        ({"exp": None}, "no 'exp' claim"),
        ({"sub": None}, "no 'sub' claim"),
        ({"sub": 5}, "invalid"),
    ],
)
def test_claims_are_checked(tokens, claims, why):
    now = int(time.time())
    claims = {
        k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v for k, v in claims.items()
    }
    text = jwt.encode(
        {
            k: v
            for k, v in {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": "ada",
                "exp": int(time.time()) + 60,
                **claims,
            }.items()
            if v is not None
        },
        EC_KEY,
        algorithm="ES256",
        headers={"kid": "ec"},
    )
    assert why in refusal(tokens, text)


def test_leeway_admits_a_token_just_expired():
    lenient = Auth(issuer=ISSUER, audience=(AUDIENCE,), algorithms=("ES256",), leeway=30.0)
    tokens = Tokens(lenient, Keys(lenient, None, jwks(jwk(EC_KEY, "ec", "ES256"))))
    assert verify(tokens, token(exp=int(time.time()) - 5))["sub"] == "ada"


class Issuer:
    """A JWKS URL's answers, counted; `fail` makes the next fetches fail."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.fail = False

    async def fetch(self, url: str) -> bytes:
        self.fetches += 1
        if self.fail:
            raise OSError("connection refused")
        return jwks(*self.keys)


def test_a_jwks_url_is_cached_fetched_again_on_an_unknown_key_id_at_a_bounded_rate():
    now = [1000.0]
    auth = Auth(
        issuer=ISSUER,
        audience=(AUDIENCE,),
        algorithms=("ES256",),
        jwks_url="https://issuer.example/jwks",
        jwks_max_age=600.0,
        jwks_min_interval=30.0,
    )
    issuer = Issuer(jwk(EC_KEY, "ec", "ES256"))
    keys = Keys(auth, fetch=issuer.fetch, clock=lambda: now[0])
    tokens = Tokens(auth, keys)

    async def run() -> None:
        await keys.start()
        assert issuer.fetches == 1
        for _ in range(5):  # cached
            assert (await tokens.verify(token()))["sub"] == "ada"
        assert issuer.fetches == 1
        rotated = ec.generate_private_key(ec.SECP256R1())
        issuer.keys.append(jwk(rotated, "new", "ES256"))
        now[0] += 31
        assert (await tokens.verify(token(rotated, kid="new")))["sub"] == "ada"  # fetched again
        assert issuer.fetches == 2
        for i in range(20):  # made-up key ids: at most one fetch per jwks_min_interval
            with pytest.raises(Refused):
                await tokens.verify(token(kid=f"made-up-{i}"))
        assert issuer.fetches == 2
        now[0] += 31
        with pytest.raises(Refused):
            await tokens.verify(token(kid="made-up"))
        assert issuer.fetches == 3
        issuer.fail = True
        now[0] += 601  # older than jwks_max_age: fetched again; the failure keeps the keys
        assert (await tokens.verify(token()))["sub"] == "ada"
        assert issuer.fetches == 4

    asyncio.run(run())


def test_token_forms():
    assert token_of_init({"Authorization": "Bearer abc"}) == "abc"
    assert token_of_init({"authorization": "bearer abc"}) == "abc"
    assert token_of_init({"token": "abc"}) == "abc"
    assert token_of_init(None) is None and token_of_init({"other": 1}) is None
    assert bearer(None) is None and bearer("Bearer  abc ") == "abc"
    with pytest.raises(Refused, match="Authorization: Bearer"):
        bearer("Basic dXNlcjpwYXNz")


def test_an_hs256_secret_shorter_than_32_bytes_is_refused_at_start(monkeypatch):
    topology = load_topology(ROOT / "topology.yaml")
    monkeypatch.setenv("APP_JWT_SECRET", "short")
    with pytest.raises(NodeError, match="at least 32"):
        Keys.of(AUTH, topology, "nodes.gateway.auth")
    monkeypatch.setenv("APP_JWT_SECRET", "x" * 32)
    assert Keys.of(AUTH, topology, "nodes.gateway.auth").secret == b"x" * 32


# -- over HTTP, with an engine ----------------------------------------------------------------

SDL = """
type Item { id: String  owner: String }
type Query { me: String  role: String  item: Item  secret: String }
type Mutation { touch: String }
type Subscription { ticks: Int  other: Int }
"""
_NAMES = itertools.count()


async def engine() -> Any:
    name = f"auth-test-{next(_NAMES)}"

    @Resolver("Query.me", schema_name=name)
    async def me(parent: Any, args: Any, ctx: Any, info: Any) -> str | None:
        await asyncio.sleep(0)  # in a task of its own: the caller is inherited
        who = caller()
        return who.subject if who is not None else "no caller"

    @Resolver("Query.role", schema_name=name)
    async def role(parent: Any, args: Any, ctx: Any, info: Any) -> str | None:
        who = caller()
        return who.role if who is not None else None

    @Resolver("Query.item", schema_name=name)
    async def item(parent: Any, args: Any, ctx: Any, info: Any) -> dict[str, str]:
        return {"id": "1", "owner": "ada"}

    return await create_engine(SDL, schema_name=name)


def roles(**plans: RolePlan) -> dict[str, RolePlan]:
    return plans


MEMBER = RolePlan(
    "member",
    queries=frozenset({"me", "role", "item"}),
    mutations=frozenset(),
    subscriptions=frozenset({"ticks"}),
    hidden={"Item": frozenset({"owner"})},
)
RULES = Auth(
    issuer=ISSUER,
    audience=(AUDIENCE,),
    algorithms=("HS256",),
    secret=SecretSource(env="X"),
    anonymous="member",
    roles={"member": None, "admin": None},  # type: ignore[dict-item]  # names only, for _role_of
)


def gateway(shipped, auth: GatewayAuth, limits: Limits | None = None):
    """A GraphQLHttp with a real engine and `auth`; run `send(client)` against it."""
    node = shipped.nodes["gateway"]

    async def run(send: Any) -> Any:
        live = await engine()
        costs = Costs.of(live, 100)
        gate = RequestGate(limits or node.limits, costs=costs)
        http = GraphQLHttp(node, live, gate, None, lambda: True, logging.getLogger(), auth)
        async with TestClient(TestServer(http.app())) as client:
            return await send(client)

    return run


async def post(client: Any, query: str, bearer_token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    response = await client.post("/graphql", data=json.dumps({"query": query}), headers=headers)
    return response.status, await response.json()


def hs256(subject: str = "ada", **claims: Any) -> str:
    return token(SECRET, "HS256", None, sub=subject, **{"role": "member", **claims})


def rules_auth(**plans: RolePlan) -> GatewayAuth:
    plan = AuthPlan(RULES, plans or {"member": MEMBER, "admin": _admin()})
    return GatewayAuth(plan, Tokens(RULES, Keys(RULES, SECRET)))


def _admin() -> RolePlan:
    return RolePlan("admin", None, None, None)


def test_plugins_and_resolvers_see_the_caller_of_their_request(shipped):
    async def send(client: Any) -> Any:
        return [
            await post(client, "{ me role }", hs256("ada", role="admin")),
            await post(client, "{ me role }"),
        ]

    (status, signed), (_, anonymous) = asyncio.run(gateway(shipped, rules_auth())(send))
    assert status == 200 and signed["data"] == {"me": "ada", "role": "admin"}
    assert anonymous["data"] == {"me": None, "role": "member"}  # the anonymous role's
    forbidden = asyncio.run(
        gateway(shipped, rules_auth())(lambda c: post(c, "{ me }", hs256(role="staff")))
    )
    assert forbidden[0] == 403 and "names no role" in forbidden[1]["errors"][0]["message"]
    assert CALLER.get() is None  # set only in the request's own context


def test_without_an_anonymous_role_a_request_without_a_token_is_unauthenticated(shipped):
    strict = Auth(issuer=ISSUER, audience=(AUDIENCE,), algorithms=("HS256",), secret=RULES.secret)
    auth = GatewayAuth(AuthPlan(strict, {}), Tokens(strict, Keys(strict, SECRET)))

    async def send(client: Any) -> Any:
        return [await post(client, "{ me }"), await post(client, "{ me }", hs256("grace"))]

    (status, refused), (_, served) = asyncio.run(gateway(shipped, auth)(send))
    assert status == 401 and refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "needs a token" in refused["errors"][0]["message"]
    assert served["data"] == {"me": "grace"}  # no roles: a valid token may do everything


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ("{ me }", True),
        ("{ secret }", False),  # a query the role does not list
        ("{ item { id } }", True),
        ("{ item { ...F } } fragment F on Item { owner }", False),  # a hidden field
        ("{ i: item { ... on Item { o: owner } } }", False),
        ("mutation { touch }", False),
        ("subscription { ticks }", True),
        ("subscription { other }", False),
        ("{ __typename }", True),
    ],
)
def test_what_a_role_may_run_and_see_is_decided_before_it_runs(shipped, query, allowed):
    async def run() -> None:
        live = await engine()
        gate = RequestGate(Limits(), costs=Costs.of(live, 100))
        auth = rules_auth()
        CALLER.set(Caller("ada", "member", {"sub": "ada"}))
        if allowed:
            auth.authorize(gate, query, None, None)
        else:
            with pytest.raises(Refused) as refused:
                auth.authorize(gate, query, None, None)
            assert refused.value.code == "FORBIDDEN" and refused.value.status == 403
        CALLER.set(Caller("lee", "admin", {"sub": "lee"}))
        auth.authorize(gate, query, None, None)  # the admin may do everything

    asyncio.run(run())


def test_a_noisy_caller_is_throttled_while_another_is_served_at_full_rate(shipped):
    """Two callers from one address (behind one proxy, say): the limits count by subject."""
    limits = Limits(rate=Rate(requests=5, per=60.0), per_caller_in_flight=2)

    async def send(client: Any) -> Any:
        noisy = [await post(client, "{ me }", hs256("noisy")) for _ in range(12)]
        quiet = [await post(client, "{ me }", hs256("quiet")) for _ in range(5)]
        response = await client.post(
            "/graphql",
            data=json.dumps({"query": "{ me }"}),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {hs256('noisy')}",
            },
        )
        return noisy, quiet, response.status, response.headers.get("Retry-After")

    noisy, quiet, status, retry_after = asyncio.run(gateway(shipped, rules_auth(), limits)(send))
    assert [s for s, _ in noisy] == [200] * 5 + [429] * 7
    assert noisy[-1][1]["errors"][0]["extensions"]["code"] == "TOO_MANY_REQUESTS"
    assert [a["data"] for s, a in quiet if s == 200] == [{"me": "quiet"}] * 5
    assert status == 429 and retry_after is not None and int(retry_after) >= 1


def test_a_bad_token_is_paced_by_the_clients_address(shipped):
    limits = Limits(rate=Rate(requests=3, per=60.0))

    async def send(client: Any) -> Any:
        return [(await post(client, "{ me }", "garbage"))[0] for _ in range(5)]

    assert asyncio.run(gateway(shipped, rules_auth(), limits)(send)) == [401] * 3 + [429] * 2


def test_while_it_runs_rows_filters_values_and_command_statuses_follow_the_role():
    from cqrs_flow.contracts.auth import RowRule

    member = RolePlan(
        "member",
        None,
        None,
        None,
        hidden={"Loan": frozenset({"due"})},
        rows={"Loan": (RowRule("member", "sub", "String"), RowRule("shelf", "org.id", "Int"))},
        values={"lendBook": {"member": "sub"}},
    )
    auth = rules_auth(member=member)

    async def run() -> None:
        CALLER.set(Caller("ada", "member", {"sub": "ada", "org": {"id": 7}}))
        assert auth.rows() == {"Loan": [("member", "ada"), ("shelf", 7)]}
        auth.check_filter("Loan", ["member"])
        with pytest.raises(Refused, match=r"may not filter or order on Loan\.due"):
            auth.check_filter("Loan", ["due"])
        auth.check_values("lendBook", {"member": "ada"})
        with pytest.raises(Refused, match="only with member equal to its token's sub"):
            auth.check_values("lendBook", {"member": "bob"})
        assert auth.sees({"subject": "ada"}) and not auth.sees({"subject": "bob"})
        assert auth.subject() == "ada"
        CALLER.set(Caller("bob", "member", {"sub": "bob", "org": {"id": "seven"}}))
        with pytest.raises(Refused, match=r"org\.id claim, which this token has of another type"):
            auth.rows()

    asyncio.run(run())
    off = GatewayAuth()
    assert off.rows() == {} and off.sees({"subject": "x"}) and not off.enabled


def test_the_command_carries_the_callers_subject_set_by_the_gateway_never_by_the_client():
    """examples/library's AddLoanRequest has a `subject` field (the topology's `subject` key):
    the gateway fills it with the verified sub, and the command book records it."""
    from cqrs_flow.contracts.gateway import gateway_plan
    from cqrs_flow.nodes.gateway.delivery import Delivery
    from cqrs_flow.nodes.gateway.outbox import Outbox
    from cqrs_flow.nodes.gateway.resolvers import Resolvers
    from cqrs_flow.protobuf.compiler import compile_protos
    from cqrs_flow.topology.problems import Problems

    from .fakes import FakeMqtt

    library = load_topology(ROOT / "examples" / "library" / "topology.yaml")
    protos = compile_protos(list(library.protos), library.root)
    plan = gateway_plan(library, library.nodes["gateway"], protos, Problems(library.located))
    assert plan is not None and plan.mutations["lendBook"].subject_path == "subject"
    mqtt = FakeMqtt(connected=True)

    async def lend() -> Any:
        delivery = Delivery(library.status_topic, mqtt, Outbox(60.0), logging.getLogger())
        resolvers = Resolvers(None, [], delivery, 50, logging.getLogger())  # type: ignore[arg-type]
        live = await resolvers.engine(plan, "subject-test")
        CALLER.set(Caller("ada", None, {"sub": "ada"}))
        result = await live.execute(
            'mutation { lendBook(book_id: "b1", member: "ada", due: "2027-01-01") '
            "{ status command_id } }"
        )
        return result["data"]["lendBook"], delivery.book

    answer, book = asyncio.run(lend())
    assert answer["status"] == "OK", answer
    ((topic, payload),) = mqtt.published
    assert topic == "library/loans/add"
    command = protos.message_class("library.AddLoanRequest").FromString(payload)
    assert (command.subject, command.command_id) == ("ada", answer["command_id"])
    assert book.get(answer["command_id"])["subject"] == "ada"
