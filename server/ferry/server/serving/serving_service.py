"""ServingService: a thin servicer (parse, call, frame) over the catalog, the entity
parser, the reads and the store; the response framing is ``ferry.wire.responses``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import grpc.aio

from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.core.errors import FerryError, StoreUnavailableError
from ferry.core.model_binding import FEATURE_SERVICE_TAG
from ferry.server.access import require, require_all
from ferry.server.bounds import check_number
from ferry.server.errors import (
    DeadlineError,
    InvalidRequestError,
    MissingBindingError,
    NotImplementedYetError,
    status_code_of,
)
from ferry.server.registry import ModelRegistry, selector_of, version_message
from ferry.server.serving.batcher import NaturalBatcher
from ferry.server.serving.catalog import Catalog, FeaturePlan
from ferry.server.serving.entities import parse_entities
from ferry.server.serving.push import push_rows
from ferry.server.serving.reads import ServedRecorder, read_features
from ferry.stores.base import OnlineStore, Reader, WriteResult
from ferry.stores.schemas import record_schema
from ferry.wire import responses

_T = TypeVar("_T")
SERVING_SERVICE = serving_pb2.DESCRIPTOR.services_by_name["ServingService"].full_name


def add_to_server(service: ServingService, server: grpc.aio.Server) -> None:
    """Register the service's methods; the lookups return their responses already encoded
    (``ferry.wire.packed``), so they have no response serializer."""
    handlers = {
        "GetOnlineFeatures": grpc.unary_unary_rpc_method_handler(
            service.GetOnlineFeatures,
            request_deserializer=serving_pb2.GetOnlineFeaturesRequest.FromString,
        ),
        "GetModelFeatures": grpc.unary_unary_rpc_method_handler(
            service.GetModelFeatures,
            request_deserializer=serving_pb2.GetModelFeaturesRequest.FromString,
        ),
        "StreamOnlineFeatures": grpc.stream_stream_rpc_method_handler(
            service.StreamOnlineFeatures,
            request_deserializer=serving_pb2.StreamOnlineFeaturesRequest.FromString,
        ),
        "PushFeatures": grpc.unary_unary_rpc_method_handler(
            service.PushFeatures,
            request_deserializer=serving_pb2.PushFeaturesRequest.FromString,
            response_serializer=serving_pb2.PushFeaturesResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVING_SERVICE, handlers),)
    )
    # As the generated code does: registered methods are matched in the C core, not by a
    # Python lookup per call.
    server.add_registered_method_handlers(SERVING_SERVICE, handlers)


@dataclass(frozen=True)
class Limits:
    """Per-request bounds.

    Attributes:
        max_entity_rows: Most entity rows (or pushed rows) one request may carry. Default
            10,000.
        store_timeout_s: Bound on one store call when the client's deadline is later or
            unset, in seconds; past it the call fails UNAVAILABLE. Default 1.
        store_reads_in_flight: Natural batching (see ``ferry.server.serving.batcher``): most
            feature reads sent to the store at once, requests arriving meanwhile sharing the
            next one; 0 sends every request's read on its own. None (the default) takes the
            store's own ``natural_batching_reads``, chosen from measurements: 0 for SQLite
            and Redis (over the pipelined connection reads finish before the next request
            reaches the loop: 1.04 requests per read at 128 in flight, CPU unchanged), 2
            for DynamoDB (batch 1 at 16 in flight: 2.9x the calls/s, a third of the server
            CPU per call, half the p99, docs/benchmarks.md).
        max_push_future_s: How far past the server's clock a pushed event or created
            timestamp may be, in seconds. Default 300. A row from the far future would win
            every later conditional write and pin its value for good.
    """

    max_entity_rows: int = 10_000
    store_timeout_s: float = 1.0
    store_reads_in_flight: int | None = None
    max_push_future_s: float = 300.0

    def __post_init__(self) -> None:
        """Raises ValueError for a bound no server can run with (0 rows, a 0 s timeout)."""
        check_number("Limits", "max_entity_rows", self.max_entity_rows, minimum=1, integer=True)
        check_number("Limits", "store_timeout_s", self.store_timeout_s, minimum=0, exclusive=True)
        if self.store_reads_in_flight is not None:
            check_number(
                "Limits",
                "store_reads_in_flight",
                self.store_reads_in_flight,
                minimum=0,
                integer=True,
            )
        check_number("Limits", "max_push_future_s", self.max_push_future_s, minimum=0)


def _reads_in_flight(limits: Limits, store: OnlineStore) -> int:
    if limits.store_reads_in_flight is not None:
        return limits.store_reads_in_flight
    return store.natural_batching_reads


class ServingService:
    """Answers GetOnlineFeatures and PushFeatures from one online store."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        store: OnlineStore,
        limits: Limits,
        registry: ModelRegistry | None = None,
        recorder: ServedRecorder | None = None,
    ) -> None:
        self._catalog = catalog
        self._recorder = recorder
        self._store = store
        self._reader: Reader = (
            NaturalBatcher(store, reads_in_flight)
            if (reads_in_flight := _reads_in_flight(limits, store)) > 0
            else store
        )
        self._limits = limits
        self._registry = registry

    async def GetOnlineFeatures(  # noqa: N802 - the gRPC method name
        self, request: serving_pb2.GetOnlineFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """The encoded GetOnlineFeaturesResponse (see ``add_to_server``)."""
        rows, columns = await self._features(self._plan(request), request.entities, context)
        return responses.online_features_response(rows, columns)

    async def StreamOnlineFeatures(  # noqa: N802
        self,
        requests: AsyncIterator[serving_pb2.StreamOnlineFeaturesRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        """One encoded StreamOnlineFeaturesResponse per request, in order.

        Requests are answered one at a time: no task per message, which is what makes a
        streamed lookup cheaper than a unary call. A lookup that fails with a Ferry error
        (bad request, store down) is answered with that error; anything else ends the stream
        as INTERNAL (see ``ferry.server.interceptor.guard_stream``).
        """
        async for message in requests:
            try:
                if not message.HasField("request"):
                    raise InvalidRequestError(
                        "a stream message without a request", reason="MISSING_REQUEST"
                    )
                request = message.request
                rows, columns = await self._features(self._plan(request), request.entities, context)
            except FerryError as err:
                failure = serving_pb2.LookupError(
                    code=status_code_of(err).value[0],
                    message=str(err),
                    reason=err.reason,
                    metadata=err.metadata,
                )
                yield responses.stream_error_response(failure)
                continue
            yield responses.stream_features_response(rows, columns)

    async def GetModelFeatures(  # noqa: N802
        self, request: serving_pb2.GetModelFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """The encoded GetModelFeaturesResponse (see ``add_to_server``)."""
        if self._registry is None:
            raise NotImplementedYetError(
                "this server runs without a model registry: start it with --registry-uri"
            )
        selector = selector_of(request.model_name, request.selector, request.HasField("selector"))
        require("read", "registry", request.model_name)
        found = await self._registry.resolve(request.model_name, selector)
        service = found.version.feature_service
        if not service:
            raise MissingBindingError(
                f"model {request.model_name!r} version {found.version.version} has no "
                f"{FEATURE_SERVICE_TAG!r} tag naming the feature service it was trained with; "
                "bind it with ferry.client.bind_feature_service(model, version, service)",
                model=request.model_name,
                version=found.version.version,
            )
        require("read", "service", service)
        plan = self._catalog().plan_for_service(service)
        rows, columns = await self._features(plan, request.entities, context)
        version = version_message(found.version).SerializeToString()
        return responses.model_features_response(version, rows, columns)

    async def PushFeatures(  # noqa: N802
        self, request: serving_pb2.PushFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> serving_pb2.PushFeaturesResponse:
        catalog = self._catalog()
        if not request.view:
            raise InvalidRequestError("a push needs a view", reason="MISSING_VIEW")
        require("push", "view", request.view)
        view = catalog.repo.view(request.view)
        batch = push_rows(
            request,
            view,
            catalog.codecs[view.name],
            self._limits.max_entity_rows,
            latest_micros=time.time_ns() // 1000 + int(self._limits.max_push_future_s * 1e6),
        )
        result = await self._bounded(context, self._write(catalog, view.name, batch.rows))
        # Rows that lost to a newer row of the same key within the push count as skipped.
        return serving_pb2.PushFeaturesResponse(
            rows_written=result.written,
            rows_skipped_not_newer=result.skipped_not_newer + batch.superseded,
        )

    async def _write(
        self, catalog: Catalog, view: str, rows: list[tuple[bytes, bytes]]
    ) -> WriteResult:
        """Write a push's rows, the view's schema recorded first (once per catalog)."""
        table = catalog.tables[view]
        if view not in catalog.schemas_recorded:
            await record_schema(self._store, table, catalog.codecs[view])
            catalog.schemas_recorded.add(view)
        return await self._store.write(table, rows)

    async def _features(
        self,
        plan: FeaturePlan,
        entities: Mapping[str, types_pb2.Column],
        context: grpc.aio.ServicerContext,
    ) -> tuple[int, list[bytes]]:
        """The row count and the plan's encoded response columns: one store call."""
        rows, keys = parse_entities(entities, plan, self._limits.max_entity_rows)
        read = read_features(self._reader, plan, keys, self._recorder)
        return rows, await self._bounded(context, read)

    def _plan(self, request: serving_pb2.GetOnlineFeaturesRequest) -> FeaturePlan:
        catalog = self._catalog()
        which = request.WhichOneof("features")
        if which == "feature_service":
            require("read", "service", request.feature_service)
            return catalog.plan_for_service(request.feature_service)
        if which == "refs" and request.refs.refs:
            require_all("read", "view", (ref.split(":", 1)[0] for ref in request.refs.refs))
            return catalog.plan_for_refs(request.refs.refs)
        raise InvalidRequestError(
            "the request names no features: set refs or feature_service", reason="NO_FEATURES"
        )

    async def _bounded(self, context: grpc.aio.ServicerContext, work: Awaitable[_T]) -> _T:
        """Run a store call within the client's deadline and the store timeout."""
        remaining = context.time_remaining()
        limit = self._limits.store_timeout_s
        deadline_first = remaining is not None and remaining < limit
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the work in a new task per call.
            async with asyncio.timeout(remaining if deadline_first else limit):
                return await work
        except TimeoutError:
            if deadline_first:
                raise DeadlineError(
                    "the deadline passed before the online store answered"
                ) from None
            raise StoreUnavailableError(
                f"the online store did not answer within {limit:g} s",
                timeout_s=limit,
            ) from None
