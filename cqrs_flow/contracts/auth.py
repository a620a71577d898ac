"""A gateway's end-user rules checked against the topology and its GraphQL schema, and made
ready for the gateway to apply (`AuthPlan`).

The topology's `auth` section names roles and, for each, the root fields its callers may run,
the fields of each entity they may see, the documents they see (a row rule: a document field
that must equal a claim of the token) and the claims mutation arguments must equal. Every name
is checked here: an unknown role, operation, entity, field or argument is a problem at its key
path with a did-you-mean; a row rule's field must be indexed (the gateway adds it to the store's
query as a condition); and a rule that a query or mutation would get around is reported:
a row rule with a query answered by a reader RPC (which the rule cannot reach), or with a
mutation that changes or removes a document by key without `exists: <Entity>` (which looks the
key up under the rule). The gateway applies the plan at run time (nodes/gateway/auth.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cqrs_flow.contracts.documents import DocumentPlans
from cqrs_flow.contracts.sdl import Schema
from cqrs_flow.topology.model import (
    Auth,
    GatewayNode,
    Role,
    StoreNode,
    Topology,
    store_operation,
)
from cqrs_flow.topology.paths import MAX_PEM_BYTES, file_problem, path_problem
from cqrs_flow.topology.problems import KeyPath, Problems, did_you_mean

__all__ = ["ALWAYS", "AuthPlan", "RolePlan", "RowRule", "auth_plan"]

# Root fields every caller may run: the gateway's own (they answer a caller's own commands
# only) and __typename. Introspection is the gateway's `introspection` key's business.
ALWAYS = frozenset({"commandStatus", "commandSettled", "__typename", "__schema", "__type"})
# Store operations that change or remove documents that exist already, by key.
_BY_KEY = ("update", "delete", "delete_many")
_PLURAL = {"query": "queries", "mutation": "mutations", "subscription": "subscriptions"}
# Bytes of a JWKS file at most (a few keys).
MAX_JWKS_BYTES = MAX_PEM_BYTES


@dataclass(frozen=True)
class RowRule:
    """A document field that must equal a claim of the caller's token; `kind` is the GraphQL
    type a filter on the field compares (String, Int, Float, Boolean or an enum's name)."""

    field: str
    claim: str
    kind: str


@dataclass(frozen=True)
class RolePlan:
    """One role, ready to apply: the root fields it may run (None: all), the fields it may not
    select (GraphQL type -> fields), its row rules per entity, the claims mutation arguments
    must equal (mutation -> argument -> claim), and its own limits (None: the gateway's)."""

    name: str
    queries: frozenset[str] | None
    mutations: frozenset[str] | None
    subscriptions: frozenset[str] | None
    hidden: dict[str, frozenset[str]] = field(default_factory=dict)
    rows: dict[str, tuple[RowRule, ...]] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    depth: int | None = None
    cost: int | None = None

    def may_run(self, kind: str, name: str) -> bool:
        """Whether the role may run the root field `name` of an operation of `kind`."""
        allowed = {
            "query": self.queries,
            "mutation": self.mutations,
            "subscription": self.subscriptions,
        }.get(kind, frozenset())
        return name in ALWAYS or allowed is None or name in allowed


@dataclass(frozen=True)
class AuthPlan:
    """What a gateway needs to verify tokens (`auth`, the topology's section) and apply the
    rules of each role."""

    auth: Auth
    roles: dict[str, RolePlan] = field(default_factory=dict)


def auth_plan(
    topology: Topology,
    gateway: GatewayNode,
    schema: Schema,
    documents: DocumentPlans,
    report: Problems,
    writes: dict[str, str] | None = None,
) -> AuthPlan | None:
    """The gateway's rules checked against its schema (as served: with the types cqrs-flow adds)
    and its document plans; every problem reported. None when the gateway has no `auth`.
    `writes`: mutation -> the name of the entity its command writes (as its plan knows it)."""
    auth = gateway.auth
    if auth is None:
        return None
    base: KeyPath = ("nodes", gateway.name, "auth")
    _check_keys(topology, auth, report, base)
    for key in ("anonymous", "default_role"):
        role = getattr(auth, key)
        if role is not None and role not in auth.roles:
            declared = ", ".join(auth.roles) or "none"
            report(
                base + (key,),
                f"no role named '{role}' under auth.roles (roles: {declared})"
                f"{did_you_mean(role, auth.roles)}",
            )
    roles = {
        name: _role_plan(
            topology, gateway, schema, documents, role, report, base + ("roles", name), writes or {}
        )
        for name, role in auth.roles.items()
    }
    return AuthPlan(auth, roles)


def _check_keys(topology: Topology, auth: Auth, report: Problems, base: KeyPath) -> None:
    """Where the keys are fits the algorithms: HS256 with a secret, the others with a JWKS."""
    hmac = "HS256" in auth.algorithms
    public = [a for a in auth.algorithms if a != "HS256"]
    if hmac and auth.secret is None:
        report(
            base + ("algorithms",),
            "HS256 needs a shared secret: add secret: {env: NAME} or secret: {file: path} "
            "(at least 32 bytes), or leave HS256 out",
        )
    if auth.secret is not None and not hmac:
        report(
            base + ("secret",),
            "a secret is used only for HS256 tokens: add HS256 to algorithms, or remove secret",
        )
    if public and auth.jwks_file is None and auth.jwks_url is None:
        report(
            base,
            f"{', '.join(public)} tokens are checked against public keys: add "
            "jwks: {file: path} or jwks: {url: https://...}"
            + (" (or algorithms: [HS256] with a secret)" if auth.secret is not None else ""),
        )
    if not public and (auth.jwks_file is not None or auth.jwks_url is not None):
        report(
            base + ("jwks",),
            "no public-key algorithm is accepted (algorithms lists HS256 only), so the JWKS "
            "is never used: add RS256, ES256 or EdDSA to algorithms, or remove jwks",
        )
    if auth.jwks_file is not None:
        problem = file_problem(topology, auth.jwks_file, MAX_JWKS_BYTES)
        if problem:
            report(base + ("jwks", "file"), problem)
    if auth.secret is not None and auth.secret.file is not None:
        problem = path_problem(topology, auth.secret.file)
        if problem:
            report(base + ("secret", "file"), problem)


def _names(
    given: tuple[str, ...],
    known: Iterable[str],
    what: str,
    report: Problems,
    path: KeyPath,
) -> frozenset[str] | None:
    """The names a role lists (None for '*'), each unknown one reported."""
    if "*" in given:
        return None
    known = set(known)
    for i, name in enumerate(given):
        if name not in known:
            report(
                path + (i,),
                f"no {what} named '{name}' on this gateway ({_PLURAL.get(what, what)}: "
                f"{', '.join(sorted(known)) or 'none'}){did_you_mean(name, known)}",
            )
    return frozenset(given)


def _role_plan(
    topology: Topology,
    gateway: GatewayNode,
    schema: Schema,
    documents: DocumentPlans,
    role: Role,
    report: Problems,
    path: KeyPath,
    writes: dict[str, str],
) -> RolePlan:
    subscriptions = set(schema.fields_of(schema.subscription_type or "Subscription"))
    queries = _names(role.queries, schema.queries, "query", report, path + ("queries",))
    mutations = _names(role.mutations, schema.mutations, "mutation", report, path + ("mutations",))
    plan = RolePlan(
        role.name,
        queries,
        mutations,
        _names(
            role.subscriptions,
            subscriptions - ALWAYS,
            "subscription",
            report,
            path + ("subscriptions",),
        ),
        depth=role.limits.depth,
        cost=role.limits.cost,
    )
    for entity_name, rule in role.entities.items():
        where = path + ("entities", entity_name)
        entity = topology.entities.get(entity_name)
        view = documents.entities.get(entity_name)
        if entity is None:
            report(
                where,
                f"no entity named '{entity_name}' (entities: "
                f"{', '.join(topology.entities) or 'none'})"
                f"{did_you_mean(entity_name, topology.entities)}",
            )
            continue
        shown = schema.fields_of(entity_name)
        if not shown:
            report(
                where,
                f"gateway '{gateway.name}' does not show {entity_name} (not in its schema)",
            )
            continue
        if rule.fields is not None:
            for i, name in enumerate(rule.fields):
                if name not in shown:
                    report(
                        where + ("fields", i),
                        f"{entity_name} has no field '{name}' in {gateway.schema} (fields: "
                        f"{', '.join(shown)}){did_you_mean(name, shown)}",
                    )
            plan.hidden[entity_name] = frozenset(set(shown) - set(rule.fields))
        rows = []
        for name, claim in rule.rows.items():
            indexed = view.indexes if view is not None else {}
            if name not in indexed:
                fields = list(view.document.DESCRIPTOR.fields_by_name) if view is not None else []
                hint = (
                    f"add it to entities.{entity_name}.indexes"
                    if name in fields
                    else f"{entity_name}'s documents have no field '{name}'"
                    f"{did_you_mean(name, fields)}"
                )
                report(
                    where + ("rows", name),
                    f"a row rule's field must be indexed (the store's query filters on it); "
                    f"'{name}' is not one of {entity_name}'s indexed fields "
                    f"({', '.join(indexed) or 'none'}): {hint}",
                )
                continue
            rows.append(RowRule(name, claim, indexed[name]))
        if rows:
            plan.rows[entity_name] = tuple(rows)
            _check_reach(topology, gateway, schema, role, plan, entity_name, report, where, writes)
    for mutation, arguments in role.values.items():
        where = path + ("values", mutation)
        sdl_field = schema.mutations.get(mutation)
        if sdl_field is None:
            report(
                where,
                f"no mutation named '{mutation}' on this gateway"
                f"{did_you_mean(mutation, schema.mutations)}",
            )
            continue
        if not plan.may_run("mutation", mutation):
            report(where, f"role '{role.name}' may not run {mutation} (not in its mutations)")
        for argument in arguments:
            if argument not in sdl_field.arguments:
                report(
                    where + (argument,),
                    f"{mutation} has no argument '{argument}' (arguments: "
                    f"{', '.join(sdl_field.arguments) or 'none'})"
                    f"{did_you_mean(argument, sdl_field.arguments)}",
                )
        plan.values[mutation] = dict(arguments)
    return plan


def _check_reach(
    topology: Topology,
    gateway: GatewayNode,
    schema: Schema,
    role: Role,
    plan: RolePlan,
    entity: str,
    report: Problems,
    where: KeyPath,
    writes: dict[str, str],
) -> None:
    """A row rule is applied to what the gateway finds in the document service; report the
    queries and mutations of the role that would get around it."""
    for name, query in gateway.queries.items():
        returns = schema.queries.get(name)
        reached = returns is not None and returns.returns.base == entity
        if query.rpc and reached and plan.may_run("query", name):
            report(
                where + ("rows",),
                f"role '{role.name}' may run {name}, which the reader RPC {query.rpc} "
                f"answers: the row rule cannot reach it. Make {name} a get: or list: "
                f"query, or leave it out of the role's queries",
            )
    for name, mutation in gateway.mutations.items():
        if not plan.may_run("mutation", name):
            continue
        command = topology.commands.get(mutation.command)
        writers = topology.writers_of(mutation.command) if command is not None else []
        store = topology.nodes.get(writers[0].store.node) if writers else None
        if command is None or not isinstance(store, StoreNode):
            continue
        named, op = store_operation(store.write.rpcs.get(command.rpc, ""))
        if op not in _BY_KEY or mutation.exists == entity:
            continue
        if (named or writes.get(name, "")).lower() != entity.lower():
            continue
        fix = (
            "a role with a row rule may not run it (it names several keys at once)"
            if op == "delete_many"
            else f"add exists: {entity} to the mutation, so that the key is looked up under "
            "the rule first"
        )
        report(
            where + ("rows",),
            f"role '{role.name}' may run {name}, which changes {entity} documents by key "
            f"({op}) without looking them up: it could reach documents the row rule hides; {fix}",
        )
