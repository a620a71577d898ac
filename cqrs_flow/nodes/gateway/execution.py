"""A query or a mutation run by tartiflette's executor, without the per-request work its
`Engine.execute` does again for every request of the same text.

For each request, `Engine.execute` goes through the hooks of schema directives (`@on_schema_
execution`), then `build_execution_context`: it looks the operation up in the parsed document,
converts each variable definition of the operation into an executable one (its type looked up
in the schema, its coercers built) and coerces the variables with `asyncio.gather`, a task
each. The parsed document is the same object for every request of the same text (the engine's
parse cache), so `Operations` does that lookup and conversion once per (document, operation
name) and coerces the variables in turn, in the request's own task; the rest is tartiflette's
own `execute_operation` and response builder, as `Engine.execute` would call them. About a
third of an execution's CPU for `contact(id: $id)` (docs/PERFORMANCE.md). The answers, errors
included, are the engine's: tests/unit/nodes/gateway/test_execution.py runs each case both ways.

An engine whose schema has `on_schema_execution` hooks (cqrs-flow's schemas have none) is left
to `Engine.execute`.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any

from tartiflette.execution.collect import collect_executable_variable_definitions
from tartiflette.execution.context import ExecutionContext
from tartiflette.execution.execute import execute_operation
from tartiflette.language.ast import OperationDefinitionNode
from tartiflette.types.exceptions.tartiflette import TartifletteError
from tartiflette.utils.directives import resolver_executor
from tartiflette.utils.values import is_invalid_value

__all__ = ["Operations"]

PLANS = 512  # (document, operation name) pairs kept: the engine's parse cache keeps 512 texts


class _Plan:
    """What a request of one document and operation name needs before its variables."""

    __slots__ = ("document", "errors", "fragments", "operation", "variables")

    def __init__(self, schema: Any, document: Any, operation_name: str | None) -> None:
        self.document = document  # held: the plan is found by the document's id
        operations: dict[str | None, Any] = {}
        self.fragments: dict[str, Any] = {}
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                operations[definition.name.value if definition.name else None] = definition
            else:
                self.fragments[definition.name.value] = definition
        operation: Any = None
        if operation_name:
            operation = operations.get(operation_name)
        elif len(operations) == 1:
            operation = next(iter(operations.values()))
        self.operation = operation
        self.errors: list[Any] = []
        self.variables: list[Any] = []
        if operation is None:  # tartiflette's words
            self.errors.append(
                TartifletteError(
                    f"Unknown operation named < {operation_name} >."
                    if operation_name
                    else "Must provide operation name if query contains multiple operations."
                )
            )
        else:
            self.variables = collect_executable_variable_definitions(schema, operation)


class Operations:
    """Runs queries and mutations on a cooked tartiflette `engine` (see the module's text)."""

    def __init__(self, engine: Any, plans: int = PLANS) -> None:
        self.engine = engine
        executor = engine._query_executor
        # The executor `cook` bakes: the engine's own _perform_query, unless schema directives
        # wrapped it in their hooks (then each request goes through Engine.execute).
        self.direct = isinstance(executor, partial) and executor.func is resolver_executor
        self._plans: OrderedDict[tuple[int, str | None], _Plan] = OrderedDict()
        self._size = plans

    async def execute(
        self,
        query: str,
        operation_name: str | None = None,
        context: Any = None,
        variables: dict[str, Any] | None = None,
        initial_value: Any = None,
    ) -> dict[str, Any]:
        engine = self.engine
        if not self.direct:
            return await engine.execute(  # type: ignore[no-any-return]
                query, operation_name, context, variables, initial_value
            )
        schema, respond = engine._schema, engine._build_response
        document, errors = engine._cached_parse_and_validate_query(query, schema)
        if errors:
            return await respond(errors=errors)  # type: ignore[no-any-return]
        try:
            plan = self._plan(schema, document, operation_name)
            if plan.errors:
                return await respond(errors=plan.errors)  # type: ignore[no-any-return]
            values, errors = await _coerced(plan.variables, variables or {}, context)
            if errors:
                return await respond(errors=errors)  # type: ignore[no-any-return]
            run = ExecutionContext(
                schema=schema,
                fragments=plan.fragments,
                operation=plan.operation,
                context=context,
                root_value=initial_value,
                variable_values=values,
            )
            data = await execute_operation(run, plan.operation, initial_value)
            return await respond(data=data, errors=run.errors)  # type: ignore[no-any-return]
        except Exception as exc:  # as Engine.execute answers what escapes its executor
            if not isinstance(exc, TartifletteError):
                exc = TartifletteError(
                    message=str(exc), path=[schema.query_operation_name], original_error=exc
                )
            return await respond(errors=[exc])  # type: ignore[no-any-return]

    def _plan(self, schema: Any, document: Any, operation_name: str | None) -> _Plan:
        key = (id(document), operation_name)
        plan = self._plans.get(key)
        if plan is None or plan.document is not document:
            plan = self._plans[key] = _Plan(schema, document, operation_name)
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return plan


async def _coerced(
    definitions: list[Any], raw: dict[str, Any], context: Any
) -> tuple[dict[str, Any], list[Any]]:
    """tartiflette's coerce_variables, each variable in turn in this task (it gathers them)."""
    values: dict[str, Any] = {}
    errors: list[Any] = []
    for definition in definitions:
        result = await definition.coercer(raw, context)
        if is_invalid_value(result):
            continue
        value, found = result
        if found:
            errors.extend(found)
        else:
            values[definition.name] = value
    return values, errors
