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

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cqrs_flow.contracts.auth import AuthPlan, RolePlan, RowRule
from cqrs_flow.nodes.gateway.limits import LimitExceeded, RequestGate, caller_key, check_query
from cqrs_flow.nodes.gateway.refusals import REQUEST_ID, Refused
from cqrs_flow.plugins import CALLER, Caller

if TYPE_CHECKING:
    from cqrs_flow.nodes.gateway.tokens import Tokens

__all__ = [
    "FORBIDDEN",
    "UNAUTHENTICATED",
    "GatewayAuth",
    "forbidden",
    "token_of_init",
    "unauthenticated",
]

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
_META_FIELDS = ("__typename", "__schema", "__type")

log = logging.getLogger("cqrs_flow.gateway")


def unauthenticated(message: str) -> Refused:
    return Refused(message, UNAUTHENTICATED, status=401)


def forbidden(message: str) -> Refused:
    """A rule's refusal, logged as it is made (one warning line: the request id and what the
    role may not do; never the token)."""
    log.warning("request %s: forbidden: %s", REQUEST_ID.get(), message)
    return Refused(message, FORBIDDEN, status=403)


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
