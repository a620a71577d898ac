"""examples/library with its JWT authentication, against a real `cqrs-flow up`: visitors (no
token) read the catalogue, members see and borrow for themselves only, librarians see all; every
rule kind allowed and refused over HTTP and over WebSocket, and every kind of bad token refused.
The test makes its own signing keys and JWKS (the example's is a placeholder)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from system import System, prepare, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "library"
ISSUER, AUDIENCE = "https://auth.library.example", "library"
PROTOCOL = "graphql-transport-ws"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())  # in no JWKS the gateway has

LEND = (
    "mutation($book: String!, $member: String!) "
    '{ lendBook(book_id: $book, member: $member, due: "2027-01-31") '
    "{ status message id command_id } }"
)
LOANS = "{ loans(first: 50) { totalCount nodes { id member book_id } } }"


def token(subject: str | None = "ada", role: str = "member", key=KEY, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "role": role, "iat": now}
    body["exp"] = now + 600
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": "test-key"})


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> System:
    directory = tmp_path_factory.mktemp("library-auth")
    topology = prepare(
        "library.yaml",
        directory,
        source=EXAMPLE / "topology.yaml",
        stop_timeout="3s",
        **{
            "nodes.writer.delay": "50ms",
            "nodes.gateway.auth.leeway": "0s",
            "nodes.gateway.limits": {"websockets_per_caller": 2},
        },
    )
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    jwks = {"keys": [{**public, "kid": "test-key", "alg": "ES256"}]}
    (directory / "keys" / "jwks.json").write_text(json.dumps(jwks))
    system = System(topology).start()
    yield system
    system.stop()


def ask(system: System, query: str, variables: dict | None = None, bearer: str | None = None):
    """(status, answer) of a POST with `bearer` as its token (None: no token)."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    status, body, response_headers = system.http(
        body=json.dumps({"query": query, "variables": variables}).encode(), headers=headers
    )
    return status, json.loads(body), response_headers


def code(answer: dict) -> str:
    return answer["errors"][0]["extensions"]["code"]


@pytest.fixture(scope="module")
def loans(library):
    """A book lent to ada (by ada) and one lent to bob (by a librarian)."""
    librarian = token("lee", "librarian")
    status, answer, _ = ask(
        library, 'mutation { addBook(title: "Dune", year: 1965) { status id } }', bearer=librarian
    )
    assert status == 200 and answer["data"]["addBook"]["status"] == "OK", answer
    book = answer["data"]["addBook"]["id"]
    wait_until(lambda: ask(library, f'{{ book(id: "{book}") {{ id }} }}')[1]["data"]["book"])
    lent = {}
    for member, bearer in (("ada", token("ada")), ("bob", librarian)):
        _, answer, _ = ask(library, LEND, {"book": book, "member": member}, bearer)
        assert answer["data"]["lendBook"]["status"] == "OK", answer
        lent[member] = answer["data"]["lendBook"]
    ids = {lent["ada"]["id"], lent["bob"]["id"]}
    wait_until(
        lambda: (
            ids
            <= {n["id"] for n in ask(library, LOANS, bearer=librarian)[1]["data"]["loans"]["nodes"]}
        )
    )
    return book, lent


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (lambda: token(exp=int(time.time()) - 5), "expired"),
        (lambda: token(nbf=int(time.time()) + 300), "not valid yet"),
        (lambda: token(aud="another-service"), "not meant for this gateway"),
        (lambda: token(iss="https://evil.example"), "issuer"),
        (lambda: token(key=OTHER_KEY), "signature"),
        (
            lambda: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "ada", "exp": int(time.time()) + 60},
                OTHER_KEY,
                algorithm="ES256",
                headers={"kid": "unknown-key"},
            ),
            "key this gateway does not know",
        ),
        (
            lambda: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "lee", "role": "librarian"},
                None,
                algorithm="none",
            ),
            "algorithm",
        ),
        (lambda: tampered(token()), "signature"),
        (lambda: token(subject=None), "'sub'"),
        (lambda: "not-a-jwt", "not a JWT"),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "wrong-issuer",
        "wrong-key",
        "unknown-key",
        "alg-none",
        "tampered",
        "no-subject",
        "garbage",
    ],
)
def test_a_bad_token_is_refused_401_unauthenticated_over_http_and_websocket(library, bad, why):
    bearer = bad()
    status, answer, headers = ask(library, "{ books { totalCount } }", bearer=bearer)
    assert status == 401 and code(answer) == "UNAUTHENTICATED", answer
    assert why in answer["errors"][0]["message"] and "data" not in answer["errors"][0]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    closed = asyncio.run(socket(library, bearer, []))
    assert closed == ("closed", 4403), closed
    assert bearer not in library.output()  # the gateway never logs a token


def tampered(valid: str) -> str:
    """The token with its payload changed (role: librarian) and its signature kept."""
    header, payload, signature = valid.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["role"] = "librarian"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{signature}"


def test_a_token_of_a_role_the_gateway_does_not_have_is_forbidden(library):
    status, answer, _ = ask(library, "{ books { totalCount } }", bearer=token(role="admin"))
    assert status == 403 and code(answer) == "FORBIDDEN", answer


# -- rules over HTTP ------------------------------------------------------------------------------


def test_queries_a_visitor_may_run_and_may_not(library):
    status, answer, _ = ask(library, "{ books { totalCount } }")
    assert status == 200 and "errors" not in answer, answer
    status, answer, _ = ask(library, LOANS)
    assert status == 403 and code(answer) == "FORBIDDEN", answer
    assert "may not run the query loans" in answer["errors"][0]["message"]
    request_id = answer["errors"][0]["extensions"]["request_id"]
    wait_until(  # one warning line, with the request id and the reason
        lambda: (
            f"request {request_id}: forbidden: the role 'visitor' may not run the query loans"
            in library.output()
        )
    )


def test_fields_a_visitor_may_see_and_may_not(library, loans):
    book, _ = loans
    status, answer, _ = ask(library, f'{{ book(id: "{book}") {{ title year }} }}')
    assert answer["data"]["book"]["title"] == "Dune", answer
    hidden = (
        f'query {{ b: book(id: "{book}") {{ ...F }} }} '
        "fragment F on Book { loans { nodes { member } } }"
    )
    status, answer, _ = ask(library, hidden)
    assert status == 403 and code(answer) == "FORBIDDEN", answer
    assert "Book.loans" in answer["errors"][0]["message"]
    assert answer["data"] is None  # nothing ran


def test_mutations_a_role_may_run_and_may_not(library, loans):
    book, _ = loans
    status, answer, _ = ask(library, LEND, {"book": book, "member": "ada"})  # a visitor
    assert status == 403 and code(answer) == "FORBIDDEN", answer
    status, answer, _ = ask(
        library, 'mutation { addAuthor(name: "x") { status } }', bearer=token("ada")
    )
    assert status == 403 and "may not run the mutation addAuthor" in answer["errors"][0]["message"]


def test_a_member_lends_to_themselves_only(library, loans):
    book, lent = loans
    assert lent["ada"]["command_id"]
    _, answer, _ = ask(library, LEND, {"book": book, "member": "bob"}, token("ada"))
    assert answer["data"]["lendBook"] is None and code(answer) == "FORBIDDEN", answer
    assert "member equal to its token's sub" in answer["errors"][0]["message"]


def test_a_member_sees_only_their_own_loans_and_a_librarian_all(library, loans):
    book, lent = loans
    mine = ask(library, LOANS, bearer=token("ada"))[1]["data"]["loans"]
    assert {n["member"] for n in mine["nodes"]} == {"ada"}
    assert mine["totalCount"] == len(mine["nodes"])  # counted in the store, under the rule
    everyone = ask(library, LOANS, bearer=token("lee", "librarian"))[1]["data"]["loans"]
    assert {"ada", "bob"} <= {n["member"] for n in everyone["nodes"]}
    # a lookup, a relation and a filter: the same rule
    other = f'{{ loan(id: "{lent["bob"]["id"]}") {{ member }} }}'
    assert ask(library, other, bearer=token("ada"))[1]["data"] == {"loan": None}
    assert ask(library, other, bearer=token("lee", "librarian"))[1]["data"]["loan"] == {
        "member": "bob"
    }
    relation = f'{{ book(id: "{book}") {{ loans {{ totalCount nodes {{ member }} }} }} }}'
    via_book = ask(library, relation, bearer=token("ada"))[1]["data"]["book"]["loans"]
    assert via_book == {"totalCount": 1, "nodes": [{"member": "ada"}]}
    filtered = '{ loans(where: {member: {eq: "bob"}}) { totalCount } }'
    assert ask(library, filtered, bearer=token("ada"))[1]["data"]["loans"]["totalCount"] == 0


def test_a_member_cannot_change_a_loan_they_cannot_see(library, loans):
    book, lent = loans
    update = (
        "mutation($id: String!, $book: String!) { updateLoan(id: $id, book_id: $book, "
        'member: "ada", due: "2030-01-01", returned: true) { status message } }'
    )
    _, answer, _ = ask(library, update, {"id": lent["bob"]["id"], "book": book}, token("ada"))
    assert answer["data"]["updateLoan"] == {
        "status": "ERROR",
        "message": f"loan {lent['bob']['id']} not found",
    }


def test_a_command_status_says_who_asked_and_only_to_them(library, loans):
    _, lent = loans
    status = f'{{ commandStatus(id: "{lent["ada"]["command_id"]}") {{ state subject }} }}'
    wait_until(
        lambda: (
            ask(library, status, bearer=token("ada"))[1]["data"]["commandStatus"]["state"]
            == "APPLIED"
        )
    )
    assert ask(library, status, bearer=token("ada"))[1]["data"]["commandStatus"] == {
        "state": "APPLIED",
        "subject": "ada",
    }
    assert ask(library, status, bearer=token("bob"))[1]["data"]["commandStatus"] is None


def test_a_member_has_tighter_limits(library):
    deep = "{ books { nodes { author { books { nodes { author { name } } } } } } }"
    status, answer, _ = ask(library, deep, bearer=token("ada"))
    assert status == 400 and code(answer) == "LIMIT_EXCEEDED", answer
    assert "auth.roles.member.limits.depth" in answer["errors"][0]["message"]
    assert "errors" not in ask(library, deep, bearer=token("lee", "librarian"))[1]
    costly = "{ a: books(first: 1000) { nodes { id } } b: books(first: 1000) { nodes { id } } }"
    _, answer, _ = ask(library, costly, bearer=token("ada"))
    assert "auth.roles.member.limits.cost" in answer["errors"][0]["message"], answer


# -- rules over WebSocket -------------------------------------------------------------------------


async def socket(system: System, bearer: str | None, operations: list[dict], close_after=None):
    """Run `operations` (subscribe payloads) on one graphql-transport-ws connection that sends
    `bearer` in connection_init; each one's messages, or ("closed", code) if the gateway closed
    the socket."""
    url = f"http://{system.gateway.listen.target}/graphql"
    init: dict = {"type": "connection_init"}
    if bearer is not None:
        init["payload"] = {"Authorization": f"Bearer {bearer}"}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=(PROTOCOL,)) as ws:
        await ws.send_json(init)
        first = await ws.receive(timeout=10)
        if first.type != aiohttp.WSMsgType.TEXT:
            return ("closed", ws.close_code)
        assert json.loads(first.data) == {"type": "connection_ack"}
        answers = []
        for operation in operations:
            operation_id = uuid.uuid4().hex
            await ws.send_json({"id": operation_id, "type": "subscribe", "payload": operation})
            messages = []
            while True:
                message = await ws.receive(timeout=close_after or 10)
                if message.type != aiohttp.WSMsgType.TEXT:
                    return ("closed", ws.close_code)
                messages.append(json.loads(message.data))
                if messages[-1]["type"] in ("complete", "error"):
                    break
            answers.append(messages)
        if close_after is not None:
            message = await ws.receive(timeout=close_after)
            return ("closed", ws.close_code, message.extra)
        return answers


def test_rules_over_websocket(library, loans):
    book, lent = loans
    visitor, member = (
        asyncio.run(
            socket(library, None, [{"query": "{ books { totalCount } }"}, {"query": LOANS}])
        ),
        asyncio.run(
            socket(
                library,
                token("ada"),
                [
                    {"query": LOANS},
                    {"query": LEND, "variables": {"book": book, "member": "bob"}},
                    {"query": 'mutation { addAuthor(name: "x") { status } }'},
                ],
            )
        ),
    )
    assert visitor[0][0]["type"] == "next" and "errors" not in visitor[0][0]["payload"]
    assert visitor[1][0]["type"] == "error"
    assert visitor[1][0]["payload"][0]["extensions"]["code"] == "FORBIDDEN"
    assert {n["member"] for n in member[0][0]["payload"]["data"]["loans"]["nodes"]} == {"ada"}
    assert member[1][0]["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert member[2][0]["payload"][0]["extensions"]["code"] == "FORBIDDEN"
    settled = f'subscription {{ commandSettled(id: "{lent["bob"]["command_id"]}") {{ state }} }}'
    (librarian,) = asyncio.run(socket(library, token("lee", "librarian"), [{"query": settled}]))
    assert librarian[0]["payload"]["data"]["commandSettled"]["state"] == "APPLIED", librarian
    (ada,) = asyncio.run(socket(library, token("ada"), [{"query": settled}]))
    assert ada[0]["payload"]["data"]["commandSettled"] is None  # not her command


def test_a_websocket_is_closed_when_its_token_expires(library):
    short = token("ada", exp=int(time.time()) + 2)
    started = time.monotonic()
    closed = asyncio.run(socket(library, short, [{"query": LOANS}], close_after=10))
    assert closed[:2] == ("closed", 4403) and "expired" in closed[2], closed
    assert time.monotonic() - started < 8


# -- who asked, in the change log -----------------------------------------------------------------


def generated_changes_client(directory: Path):
    """The Changes service's stub generated from changes.proto by grpcio-tools (as an outside
    client would make it), and its messages."""
    import importlib
    import shutil
    import sys

    from grpc_tools import protoc

    source = ROOT / "cqrs_flow" / "protobuf" / "proto" / "cqrs_flow" / "changes.proto"
    shutil.copy(source, directory / "library_changes.proto")
    status = protoc.main(
        [
            "protoc",
            f"-I{directory}",
            f"--python_out={directory}",
            f"--grpc_python_out={directory}",
            str(directory / "library_changes.proto"),
        ]
    )
    assert status == 0
    sys.path.insert(0, str(directory))
    try:
        return (
            importlib.import_module("library_changes_pb2"),
            importlib.import_module("library_changes_pb2_grpc"),
        )
    finally:
        sys.path.remove(str(directory))


def test_the_change_log_says_which_caller_asked_for_each_change(library, loans, tmp_path):
    """Followed from the reader's Changes service with a client generated from changes.proto:
    a member's lend carries their subject, a librarian's theirs, a book (whose requests carry no
    subject) none."""
    import grpc

    messages, stubs = generated_changes_client(tmp_path)
    book, lent = loans
    reader = library.topology.nodes["reader"].listen.target
    metadata = (("x-cqrs-flow-node", "gateway"), ("x-cqrs-flow-token", library.token("gateway")))

    def follow():
        with grpc.insecure_channel(reader) as channel:
            changes = stubs.ChangesStub(channel)
            request = messages.FollowRequest(after=0, wait=False)
            return list(changes.Follow(request, metadata=metadata, timeout=10))

    found = follow()
    by_key = {(c.entity, c.key, c.op): c for c in found}
    assert by_key[("Loan", lent["ada"]["id"], "insert")].subject == "ada"
    assert by_key[("Loan", lent["bob"]["id"], "insert")].subject == "lee"  # the librarian lent it
    assert by_key[("Book", book, "insert")].subject == ""
    assert by_key[("Loan", lent["ada"]["id"], "insert")].command_id == lent["ada"]["command_id"]


# -- live subscriptions under the rules ------------------------------------------------------------


def test_a_refused_subscription_is_an_error_and_the_connection_goes_on(library):
    visitor = asyncio.run(
        socket(
            library,
            None,
            [
                {"query": "subscription { booksChanged { op position } }"},  # a librarian's
                {"query": "{ books { totalCount } }"},
            ],
        )
    )
    refused, answered = visitor
    assert [m["type"] for m in refused] == ["error"], refused
    assert refused[0]["payload"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "may not run the subscription booksChanged" in refused[0]["payload"][0]["message"]
    assert [m["type"] for m in answered] == ["next", "complete"], answered
    assert "errors" not in answered[0]["payload"]
    expired = token("ada", exp=int(time.time()) - 5)
    assert asyncio.run(socket(library, expired, [])) == ("closed", 4403)


async def live(system: System, bearer: str, query: str, variables: dict | None = None):
    """An open subscription: (the socket, its session, the first message's payload)."""
    url = f"http://{system.gateway.listen.target}/graphql"
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(url, protocols=(PROTOCOL,))
    await ws.send_json(
        {"type": "connection_init", "payload": {"Authorization": f"Bearer {bearer}"}}
    )
    assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
    payload = {"query": query, "variables": variables or {}}
    await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
    first = await ws.receive_json(timeout=10)
    assert first["type"] == "next", first
    return ws, http, first["payload"]["data"]


async def next_change(ws, wait: float = 10.0) -> dict | None:
    """The next message's change, or None when none comes within `wait` seconds."""
    try:
        message = await ws.receive_json(timeout=wait)
    except asyncio.TimeoutError:
        return None
    assert message["type"] == "next", message
    return next(iter(message["payload"]["data"].values()))


LOANS_LIVE = (
    "subscription { loansChanged "
    "{ op key position subject documents { member } document { member } } }"
)


def test_a_members_live_subscription_tells_only_the_changes_their_row_rule_allows(library, loans):
    book, lent = loans

    async def scenario():
        ws, http, first = await live(library, token("ada"), LOANS_LIVE)
        try:
            assert {d["member"] for d in first["loansChanged"]["documents"]} == {"ada"}
            # the librarian lends to bob, then ada to herself: only ada's comes
            lee = token("lee", "librarian")
            for member, bearer in (("bob", lee), ("ada", token("ada"))):
                _, answer, _ = await asyncio.to_thread(
                    ask, library, LEND, {"book": book, "member": member}, bearer
                )
                assert answer["data"]["lendBook"]["status"] == "OK", answer
                if member == "ada":
                    mine = answer["data"]["lendBook"]["id"]
            change = await next_change(ws)
            assert change is not None and change["key"] == mine, change
            assert (change["op"], change["document"]) == ("INSERT", {"member": "ada"})
            assert change["subject"] == "ada"  # hers: she sees who asked
            assert await next_change(ws, wait=1.5) is None  # bob's loan was never told
        finally:
            await ws.close()
            await http.close()

        # one document she may not see: null, and its changes untold
        query = "subscription($id: String!) { loanChanged(id: $id) { op key document { member } } }"
        ws, http, first = await live(library, token("ada"), query, {"id": lent["bob"]["id"]})
        try:
            assert first["loanChanged"]["document"] is None
            update = (
                "mutation($id: String!, $book: String!) { updateLoan(id: $id, book_id: $book, "
                'member: "bob", due: "2031-01-01", returned: false) { status } }'
            )
            _, answer, _ = await asyncio.to_thread(
                ask, library, update, {"id": lent["bob"]["id"], "book": book}, lee
            )
            assert answer["data"]["updateLoan"]["status"] == "OK", answer
            assert await next_change(ws, wait=3) is None
        finally:
            await ws.close()
            await http.close()

    asyncio.run(scenario())


# -- introspection per role -----------------------------------------------------------------------


def schema_of(system: System, bearer: str | None):
    """The schema a gql client fetches (and checks) from the gateway as the caller of `bearer`."""
    import gql
    from gql.transport.aiohttp import AIOHTTPTransport

    url = f"http://{system.gateway.listen.target}/graphql"
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}

    async def fetch():
        client = gql.Client(
            transport=AIOHTTPTransport(url=url, headers=headers), fetch_schema_from_transport=True
        )
        async with client:
            return client.schema

    return asyncio.run(fetch())


def test_introspection_shows_each_role_what_it_may_use_only(library):
    visitor = schema_of(library, None)
    assert set(visitor.query_type.fields) == {"authors", "author", "books", "book", "commandStatus"}
    assert visitor.mutation_type is None  # no mutation to discover
    assert set(visitor.subscription_type.fields) == {"commandSettled"}
    assert "loans" not in visitor.type_map["Book"].fields  # a field of Book it may not see
    assert not {"Loan", "LoanConnection", "LoanWhere", "MemberLoans"} & set(visitor.type_map)

    member = schema_of(library, token("ada"))
    assert set(member.mutation_type.fields) == {"lendBook", "updateLoan"}
    assert {"loans", "loan"} <= set(member.query_type.fields)
    assert "memberLoans" not in member.query_type.fields
    assert set(member.subscription_type.fields) == {"commandSettled", "loanChanged", "loansChanged"}
    assert "Loan" in member.type_map

    librarian = schema_of(library, token("lee", "librarian"))
    assert {"addAuthor", "removeBooks", "lendBook"} <= set(librarian.mutation_type.fields)
    assert "loans" in librarian.type_map["Book"].fields

    # __type answers null for a type outside the caller's view, and hides fields there too
    look = '{ loan: __type(name: "Loan") { name } book: __type(name: "Book") { fields { name } } }'
    answer = ask(library, look)[1]["data"]
    assert answer["loan"] is None
    assert "loans" not in {f["name"] for f in answer["book"]["fields"]}
    assert ask(library, look, bearer=token("ada"))[1]["data"]["loan"] == {"name": "Loan"}


# -- WebSocket places per subject -----------------------------------------------------------------


def test_websocket_places_count_by_subject_once_connection_init_said_who(library):
    """limits.websockets_per_caller is 2 here: ada cannot open a third, whatever address she
    comes from; bob, from the same address, still can."""
    url = f"http://{library.gateway.listen.target}/graphql"

    async def open_as(http, bearer):
        ws = await http.ws_connect(url, protocols=(PROTOCOL,))
        await ws.send_json(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {bearer}"}}
        )
        message = await ws.receive(timeout=10)
        if message.type != aiohttp.WSMsgType.TEXT:
            return ws, ("closed", ws.close_code)
        return ws, json.loads(message.data)["type"]

    async def scenario():
        async with aiohttp.ClientSession() as http:
            opened = [await open_as(http, token("ada")) for _ in range(3)]
            assert [o[1] for o in opened[:2]] == ["connection_ack", "connection_ack"]
            assert opened[2][1] == ("closed", 1013), opened[2][1]
            bob = await open_as(http, token("bob"))
            assert bob[1] == "connection_ack"
            for ws, _ in [*opened, bob]:
                await ws.close()
            again = await open_as(http, token("ada"))  # her places are free again
            assert again[1] == "connection_ack"
            await again[0].close()

    asyncio.run(scenario())
