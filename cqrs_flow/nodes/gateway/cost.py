"""What one GraphQL operation may cost, counted on its parsed document against the schema
before it runs (limits.cost).

Apollo Router's demand control is the model, with its default weights: each object (a field
whose type is an object, interface or union) costs 1, scalars and enums cost nothing. A field
returning a list multiplies the cost of each item (the object and what it selects) by the
list's size: the largest whole-number argument it is given (its `count`, the argument
limits.list_count looks at), at most list_count; or list_count when it is given none. Aliases
count each time, fragments where they are spread, and nesting multiplies. So
`listContacts(count: 1000) { id name last_updated }` costs 1,000, and thirty aliases of it
30,000. Introspection (under `__schema` and `__type`) answers from the schema, not from data:
its lists count as one item, so the playground's query costs what it selects.

A query text is compiled once (cached, like tartiflette's parse of it) into terms: a number of
objects and the list sizes they are multiplied by, some of them variables. A request then only
multiplies and adds those terms with its own variables. The same compilation tells whether the
document asks for introspection (`__schema` or `__type`, under an alias or in a fragment too):
decided on the parsed document, so no spelling of the text gets past it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from cqrs_flow.topology.model import Limits

__all__ = ["Costs", "operation_costs", "selects_introspection"]

# One list size: the whole-number literals given to the field, the variables given to it, and
# what it is when given none (None: the list size of the gateway, list_count).
Size = tuple[tuple[int, ...], tuple[str, ...], int | None]
# Objects, by the list sizes they are multiplied by (outermost first).
Terms = Counter[tuple[Size, ...]]
_INTROSPECTION = ("__schema", "__type")


class _Document:
    """What the gateway reads from one parsed document: each operation's cost terms, and
    whether it selects introspection fields anywhere."""

    __slots__ = ("introspects", "operations")

    def __init__(self, operations: dict[str | None, _Operation], introspects: bool) -> None:
        self.operations = operations
        self.introspects = introspects


_INVALID = _Document({}, introspects=False)  # a text that does not parse or validate


class _Operation:
    __slots__ = ("defaults", "kind", "terms")

    def __init__(self, terms: Terms, defaults: dict[str, Any], kind: str = "query") -> None:
        self.terms = terms
        self.defaults = defaults  # variable -> its default value in the operation
        self.kind = kind  # query, mutation or subscription


class Costs:
    """The cost of operations against one schema; `parse` gives a query text's document, or
    None when the text does not parse or validate (then the engine answers the errors)."""

    def __init__(
        self,
        schema: Any,
        parse: Callable[[str], Any],
        list_size: int,
        cache_size: int = 512,
        connections: frozenset[str] = frozenset(),
        page_size: int = Limits.page_size,
    ) -> None:
        self.schema = schema
        self.parse = parse
        self.list_size = list_size
        self.connections = connections  # the Relay connection types (BookConnection, ...)
        self.page_size = page_size  # the size of a page that asks for neither first nor last
        self._compiled = lru_cache(maxsize=cache_size)(self._compile)

    @classmethod
    def of(
        cls,
        engine: Any,
        list_size: int,
        connections: frozenset[str] = frozenset(),
        page_size: int = Limits.page_size,
    ) -> Costs:
        """The costs against a tartiflette engine's schema, parsing with the engine's cache (so
        the execution that follows does not parse the query again)."""

        def parse(query: str) -> Any:
            document, _ = engine._cached_parse_and_validate_query(query, engine._schema)
            return document

        return cls(engine._schema, parse, list_size, connections=connections, page_size=page_size)

    def cost(
        self,
        query: str,
        operation_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> int:
        """The cost of the operation `operation_name` of `query` (0 if it does not validate)."""
        operations = self._compiled(query).operations
        if not operations:
            return 0
        if operation_name in operations:
            chosen = [operations[operation_name]]
        else:  # its only operation; or the engine will refuse it, so count the dearest
            chosen = list(operations.values())
        return max(self._evaluate(operation, variables or {}) for operation in chosen)

    def operation_type(self, query: str, operation_name: str | None = None) -> str | None:
        """'query', 'mutation' or 'subscription': what the operation `operation_name` of `query`
        (its only one, without a name) is, by the parsed document; None when the document does
        not validate or has no such operation (then the engine answers the error)."""
        operations = self._compiled(query).operations
        if operation_name is None and len(operations) == 1:
            return next(iter(operations.values())).kind
        operation = operations.get(operation_name) if operation_name is not None else None
        return operation.kind if operation is not None else None

    def introspects(self, query: str) -> bool:
        """Whether `query` selects `__schema` or `__type` anywhere (False if it does not
        validate: the engine runs none of it then)."""
        return self._compiled(query).introspects

    def _compile(self, query: str) -> _Document:
        document = self.parse(query)
        if document is None:
            return _INVALID
        return _Document(
            operation_costs(document, self.schema, self.connections, self.page_size),
            selects_introspection(document),
        )

    def _evaluate(self, operation: _Operation, variables: Mapping[str, Any]) -> int:
        sizes: dict[Size, int] = {}
        total = 0
        for multipliers, fields in operation.terms.items():
            factor = 1
            for size in multipliers:
                if size not in sizes:
                    sizes[size] = self._size(size, operation.defaults, variables)
                factor *= sizes[size]
            total += fields * factor
        return total

    def _size(self, size: Size, defaults: Mapping[str, Any], variables: Mapping[str, Any]) -> int:
        literals, names, default = size
        given = list(literals)
        for name in names:
            value = variables[name] if name in variables else defaults.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                given.append(value)
        if not given:
            return self.list_size if default is None else min(default, self.list_size)
        return max(0, min(max(given), self.list_size))


def operation_costs(
    document: Any,
    schema: Any,
    connections: frozenset[str] = frozenset(),
    page_size: int = Limits.page_size,
) -> dict[str | None, _Operation]:
    """Each operation of a parsed, validated document (by name; None for an anonymous one)
    compiled into its cost terms. A field returning one of the `connections` types costs like a
    list of its page's size (its `first` or `last`, else `page_size`): the lists it holds
    (edges, nodes) are that page, the rest of it (pageInfo, totalCount) counts once."""
    fragments = {
        d.name.value: d
        for d in document.definitions
        if type(d).__name__ == "FragmentDefinitionNode"
    }
    expanded: dict[tuple[str, bool, Size | None], Terms] = {}

    def spread(
        name: str, introspecting: bool, visiting: frozenset[str], page: Size | None
    ) -> Terms:
        key = (name, introspecting, page)
        if key not in expanded:
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                return Counter()  # unknown or cyclic: the validator refused it already
            parent = schema.find_type(fragment.type_condition.name.value)
            expanded[key] = selection(
                fragment.selection_set, parent, introspecting, visiting | {name}, page
            )
        return expanded[key]

    def selection(
        selection_set: Any,
        parent: Any,
        introspecting: bool,
        visiting: frozenset[str],
        page: Size | None = None,  # the page size of the connection `parent` is
    ) -> Terms:
        terms: Terms = Counter()
        for node in selection_set.selections:
            kind = type(node).__name__
            if kind == "FragmentSpreadNode":
                terms.update(spread(node.name.value, introspecting, visiting, page))
            elif kind == "InlineFragmentNode":
                condition = node.type_condition
                inner = schema.find_type(condition.name.value) if condition else parent
                terms.update(selection(node.selection_set, inner, introspecting, visiting, page))
            elif node.selection_set is not None:  # an object; a scalar or an enum costs nothing
                terms.update(field(node, parent, introspecting, visiting, page))
        return terms

    def field(
        node: Any, parent: Any, introspecting: bool, visiting: frozenset[str], page: Size | None
    ) -> Terms:
        name = node.name.value
        introspecting = introspecting or name in _INTROSPECTION
        definition = parent.find_field(name)
        returns, is_list = definition.graphql_type, False
        while returns.is_wrapping_type:
            is_list = is_list or returns.is_list_type
            returns = returns.wrapped_type
        connection = returns.name in connections and not introspecting
        own_page = _page_size(node.arguments, page_size) if connection else None
        inner = selection(node.selection_set, returns, introspecting, visiting, own_page)
        inner[()] += 1  # the object itself
        if not is_list or introspecting:
            return inner
        size = page if page is not None else _list_size(node.arguments)
        return Counter({(size, *multipliers): fields for multipliers, fields in inner.items()})

    operations: dict[str | None, _Operation] = {}
    for definition in document.definitions:
        if type(definition).__name__ != "OperationDefinitionNode":
            continue
        root = {
            "query": schema.query_operation_name,
            "mutation": schema.mutation_operation_name,
            "subscription": schema.subscription_operation_name,
        }[definition.operation_type]
        terms = selection(definition.selection_set, schema.find_type(root), False, frozenset())
        defaults = {}
        for variable in definition.variable_definitions or ():
            default = variable.default_value
            if type(default).__name__ == "IntValueNode":
                defaults[variable.variable.name.value] = int(default.value)
        name = definition.name.value if definition.name else None
        operations[name] = _Operation(terms, defaults, definition.operation_type)
    return operations


def selects_introspection(document: Any) -> bool:
    """Whether a parsed document selects `__schema` or `__type` in any operation or fragment,
    by the field's name (an alias changes only the key of the answer)."""
    pending = [
        definition.selection_set
        for definition in document.definitions
        if getattr(definition, "selection_set", None) is not None
    ]
    while pending:
        for node in pending.pop().selections:
            if type(node).__name__ == "FieldNode" and node.name.value in _INTROSPECTION:
                return True
            if getattr(node, "selection_set", None) is not None:
                pending.append(node.selection_set)
    return False


def _page_size(arguments: Any, default: int) -> Size:
    """The size of a connection's page: its `first` or `last` (the larger), else `default`."""
    return _list_size([a for a in arguments or () if a.name.value in ("first", "last")], default)


def _list_size(arguments: Any, default: int | None = None) -> Size:
    """The whole-number literals and the variables given to a list field."""
    literals, names = [], []
    for argument in arguments or ():
        value = argument.value
        kind = type(value).__name__
        if kind == "IntValueNode":
            literals.append(int(value.value))
        elif kind == "VariableNode":
            names.append(value.name.value)
    return tuple(literals), tuple(names), default
