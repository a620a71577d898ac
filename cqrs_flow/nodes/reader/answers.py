"""Who answers a read of a reader with a read model: the model, or the store (the second hop).

- A read that names a command (READ_AFTER_COMMAND) or a log position (READ_AFTER_POSITION)
  waits up to `read_model.wait` for the model to reflect it: a command the model has seen a
  change of is there; for any other, the store's log head is asked (one Info call) and the
  model waits to reach it, which then reflects every change committed before, the command's
  included. Not reached in time: the store answers.
- Any other read is answered by the model while it is within its staleness bound
  (ReadModel.fresh), else by the store.
- A store that cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED) while the model could answer:
  with `serve_stale` the model answers, however stale, and the answer's trailing metadata says
  how stale (READ_STALENESS); else UNAVAILABLE, as a reader without a model answers. When the
  last look at the store's head failed already, a stale model answers at once instead of
  waiting for the store to fail again (a store that hangs would cost each read its timeout).
- A page after a position the model did not give (one of the store's, or of a model built
  before) is asked of the store: positions are the answerer's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.contracts.operations import BoundOperation
from cqrs_flow.nodes.reader.model import ReadModel
from cqrs_flow.protobuf.compiler import DOCUMENTS_SERVICE, ProtoSet
from cqrs_flow.stores.base import BadPosition, BadQuery, NotFound, StoreError
from cqrs_flow.stores.documents import answer_find
from cqrs_flow.stores.operations import InvalidRequest, apply_operation
from cqrs_flow.telemetry.metrics import Metrics
from cqrs_flow.topology.model import ReadModelSettings
from cqrs_flow.transport.rpc import READ_AFTER_COMMAND, READ_AFTER_POSITION, Handler

__all__ = ["READ_SOURCE", "READ_STALENESS", "FromStore", "ModelAnswers", "ModelRead", "Stale"]

# Trailing metadata of an answer from the read model: "model", and, for one beyond its bound
# (the store unreachable), the model's staleness in seconds.
READ_SOURCE = "x-cqrs-flow-read-source"
READ_STALENESS = "x-cqrs-flow-staleness"

Context = Any  # grpc.aio.ServicerContext


class FromStore(Exception):
    """The model cannot answer this read (a position it did not give, an entity it does not
    keep): the store does."""


# A read the model answers: the request's bytes in, the answer's bytes out; raises FromStore,
# NotFound, InvalidRequest or BadQuery.
ModelRead = Callable[[bytes], Awaitable[bytes]]
# What a forwarding handler answers with when the store cannot be reached: bytes, or None to
# tell that it cannot answer either (the reader then answers UNAVAILABLE).
Stale = Callable[[bytes, Context], Awaitable[bytes | None]]


class ModelAnswers:
    """The reader's handlers with a read model: each answers from the model when the rules
    above allow, else with the forwarding handler it would have without one."""

    def __init__(
        self,
        model: ReadModel,
        settings: ReadModelSettings,
        protos: ProtoSet,
        document_class: Callable[[str], type[Message]],
        list_limit: int,
        metrics: Metrics,
    ) -> None:
        self.model = model
        self.settings = settings
        self.protos = protos
        self.document_class = document_class
        self.list_limit = list_limit
        self._answered = {
            source: metrics.model_answers.labels(source) for source in ("model", "store", "stale")
        }
        find = protos.service(DOCUMENTS_SERVICE).methods_by_name["Find"]
        self._find_request: Any = protos.class_of(find.input_type)
        self._find_response: Any = protos.class_of(find.output_type)

    def facts(self) -> dict[str, object]:
        """What `status` shows of the model."""
        staleness = self.model.staleness()
        return {
            "answering": "model" if self.model.fresh(self.settings.staleness) else "store",
            "applied": self.model.applied,
            "lag": self.model.lag(),
            "staleness_s": None if staleness is None else round(staleness, 3),
        }

    async def use_model(self, context: Context) -> bool:
        """Whether the model answers this call (see the module's docstring)."""
        model = self.model
        if not model.ready:
            return False
        target: int | None = None
        for key, value in context.invocation_metadata() or ():
            if key == READ_AFTER_POSITION:
                try:
                    target = int(value)
                except ValueError:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"{READ_AFTER_POSITION} must be a change log position, got {value!r}",
                    )
            elif key == READ_AFTER_COMMAND and target is None and not model.has_seen(str(value)):
                try:
                    target = await model.head_now()
                except grpc.aio.AioRpcError:
                    return False  # the store answers, or tells that it cannot
        if target is not None:
            return await model.reach(target, self.settings.wait)
        return model.fresh(self.settings.staleness)

    def handler(self, read: ModelRead, forward: Handler, what: str = "") -> Handler:
        """Answer with `read` when the model may, else with `forward` (made with `stale`)."""
        model, store = self._answered["model"], self._answered["store"]
        stale = self.stale(read, what)

        async def answer(request: bytes, context: Context) -> Message | bytes:
            if stale is not None and not self.model.reachable:
                answered = await stale(request, context)  # the store does not answer: at once
                if answered is not None:
                    return answered
            if await self.use_model(context):
                try:
                    answered = await read(request)
                except FromStore:
                    pass
                except NotFound as exc:
                    await context.abort(grpc.StatusCode.NOT_FOUND, _not_found(what, exc))
                except (InvalidRequest, BadQuery) as exc:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                else:
                    model.inc()
                    context.set_trailing_metadata(((READ_SOURCE, "model"),))
                    return answered
            store.inc()
            return await forward(request, context)

        return answer

    def stale(self, read: ModelRead, what: str = "") -> Stale | None:
        """What answers while the store cannot be reached: the model however stale, if
        `serve_stale` (None: nothing, UNAVAILABLE)."""
        if not self.settings.serve_stale:
            return None
        stale = self._answered["stale"]

        async def answer(request: bytes, context: Context) -> bytes | None:
            if not self.model.ready:
                return None
            try:
                answered = await read(request)
            except (FromStore, StoreError, InvalidRequest):
                return None  # the store's refusal stands
            except NotFound as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, _not_found(what, exc))
            stale.inc()
            staleness = self.model.staleness() or 0.0
            context.set_trailing_metadata(
                ((READ_SOURCE, "model"), (READ_STALENESS, f"{staleness:.3f}"))
            )
            return answered

        return answer

    def operation(self, bound: BoundOperation) -> ModelRead:
        """A get or a list of the store's read service, carried out on the model."""
        document_class = self.document_class(bound.entity)
        request_class: Any = self.protos.class_of(bound.method.input_type)
        response_class = self.protos.class_of(bound.method.output_type)

        async def read(request: bytes) -> bytes:
            backend = self.model.backends.get(bound.entity)
            if backend is None:
                raise FromStore()
            response = await apply_operation(
                bound,
                request_class.FromString(request),
                backend,
                document_class,
                response_class,
                None,
                self.list_limit,
            )
            data: bytes = response.SerializeToString()
            return data

        return read

    async def find(self, request: bytes) -> bytes:
        """A FindRequest answered from the model: every page and the position in one step of the
        event loop (the model applies a batch in one step too). FromStore for an entity the
        model does not keep, or a position it did not give."""
        decoded: Any = self._find_request.FromString(request)
        backends = self.model.backends
        if any(query.entity not in backends for query in decoded.queries):
            raise FromStore()
        position = self.model.applied
        try:  # a MemoryStore never suspends: nothing changes the model meanwhile
            response = await answer_find(
                decoded, self._find_response(), backends, self.document_class, self.list_limit
            )
        except BadPosition:
            raise FromStore() from None
        response.log_position = position
        data: bytes = response.SerializeToString()
        return data


def _not_found(what: str, exc: NotFound) -> str:
    """As the store says it: `what` is "no <entity> with <key field>"."""
    return f"{what} '{exc}'" if what else str(exc)
