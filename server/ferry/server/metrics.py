"""What a server process exports to Prometheus (``ferry serve --metrics-port P``).

- gRPC, with the grpc-ecosystem names: ``grpc_server_started_total``,
  ``grpc_server_handled_total`` (by ``grpc_code``), ``grpc_server_handling_seconds``.
- What was served: ``ferry_served_values_total`` by feature view and status,
  ``ferry_served_entity_rows_total`` by view, and **freshness**,
  ``ferry_served_value_age_seconds``: per view, the age (now - event time) of every row whose
  values were served PRESENT, at the moment they were served: how stale the features were
  when a model used them, not when materialization last ran.
- The store: ``ferry_store_call_seconds`` and ``ferry_store_errors_total`` by backend and
  operation.
- The registry: ``ferry_registry_last_success_timestamp_seconds``,
  ``ferry_registry_stale_models``, ``ferry_registry_cache_age_seconds``.
- The process: CPU, memory, file descriptors (prometheus_client's process collector).

Each process has its own registry and endpoint; with ``--workers N`` worker I listens on
P + I (one port per worker, scraped as N targets: no shared files, no lock between
processes). The endpoint is prometheus_client's HTTP server on its own thread, so a scrape
never waits for (or holds up) the event loop that serves gRPC.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ferry.server.registry import ModelRegistry
from ferry.stores.base import OnlineStore, ReadRequest, ViewTable, WriteResult

LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
AGE_BUCKETS = (
    1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
    7 * 86400, 30 * 86400,
)  # fmt: skip
STATUS_NAMES = {1: "PRESENT", 2: "NULL_VALUE", 3: "NOT_FOUND", 4: "OUTSIDE_MAX_AGE"}


class AgeHistogram(Collector):
    """A histogram per feature view fed many observations at once: a batch of 100 rows is
    one ``numpy.searchsorted``, not 100 locked ``observe`` calls."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._bounds_list = [float(b) for b in buckets]
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}

    def observe_many(self, view: str, ages_s: np.ndarray) -> None:
        if not len(ages_s):
            return
        slots = np.searchsorted(self.bounds, ages_s, side="left")
        counts = np.bincount(slots, minlength=len(self.bounds) + 1)
        with self._lock:
            known = self._counts.get(view)
            self._counts[view] = counts if known is None else known + counts
            self._sums[view] = self._sums.get(view, 0.0) + float(ages_s.sum())

    def observe_few(self, view: str, ages_s: Sequence[float]) -> None:
        """``observe_many`` for a handful of ages, without numpy's per-call cost."""
        if not ages_s:
            return
        with self._lock:
            counts = self._counts.get(view)
            if counts is None:
                counts = self._counts[view] = np.zeros(len(self.bounds) + 1, np.int64)
            bounds = self._bounds_list
            for age in ages_s:
                counts[bisect.bisect_left(bounds, age)] += 1
            self._sums[view] = self._sums.get(view, 0.0) + sum(ages_s)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["feature_view"])
        with self._lock:
            items = [
                (view, counts.copy(), self._sums[view]) for view, counts in self._counts.items()
            ]
        for view, counts, total in items:
            cumulative = np.cumsum(counts).tolist()
            buckets = [
                (f"{b:g}", c) for b, c in zip(self.bounds.tolist(), cumulative, strict=False)
            ]
            buckets.append(("+Inf", cumulative[-1]))
            family.add_metric([view], buckets, total)
        yield family


class RegistryCollector(Collector):
    """The model registry's cache state, read at scrape time."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        stale, oldest = self.registry.cache_state()
        now = time.time()
        yield GaugeMetricFamily(
            "ferry_registry_last_success_timestamp_seconds",
            "When a read of MLflow last succeeded (0: never).",
            value=self.registry.last_success_micros / 1e6,
        )
        yield GaugeMetricFamily(
            "ferry_registry_stale_models",
            "Models served from the last known state because MLflow could not be read.",
            value=stale,
        )
        yield GaugeMetricFamily(
            "ferry_registry_cache_age_seconds",
            "Age of the oldest model state in memory (0 with none).",
            value=now - oldest / 1e6 if oldest else 0.0,
        )


class Metrics:
    """Every metric of one server process, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started_total",
            "RPCs started on the server.",
            grpc_labels,
            registry=self.registry,
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            [*grpc_labels, "grpc_code"],
            registry=self.registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end, in seconds.",
            grpc_labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.values = Counter(
            "ferry_served_values_total",
            "Feature values served, by feature view and status.",
            ["feature_view", "status"],
            registry=self.registry,
        )
        self.rows = Counter(
            "ferry_served_entity_rows_total",
            "Entity rows looked up, by feature view.",
            ["feature_view"],
            registry=self.registry,
        )
        self.value_age = AgeHistogram(
            "ferry_served_value_age_seconds",
            "Age (now - event time) of the rows whose values were served PRESENT, per view.",
            AGE_BUCKETS,
        )
        self.registry.register(self.value_age)
        self.store_seconds = Histogram(
            "ferry_store_call_seconds",
            "Online store calls, by backend and operation, in seconds.",
            ["backend", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "ferry_store_errors_total",
            "Online store calls that failed, by backend and operation.",
            ["backend", "operation"],
            registry=self.registry,
        )
        self._values: dict[tuple[str, int], Any] = {}
        self._rows: dict[str, Any] = {}

    def watch_registry(self, registry: ModelRegistry) -> None:
        self.registry.register(RegistryCollector(registry))

    def served(self, view: str, rows: int, statuses: dict[int, int], ages_s: Any) -> None:
        """One view's part of an answer: values by status, and the ages of PRESENT rows
        (a numpy array, or a short list)."""
        row_counter = self._rows.get(view)
        if row_counter is None:
            row_counter = self._rows[view] = self.rows.labels(view)
        row_counter.inc(rows)
        for status, count in statuses.items():
            if count:
                child = self._values.get((view, status))
                if child is None:
                    child = self._values[view, status] = self.values.labels(
                        view, STATUS_NAMES[status]
                    )
                child.inc(count)
        if isinstance(ages_s, np.ndarray):
            self.value_age.observe_many(view, ages_s)
        else:
            self.value_age.observe_few(view, ages_s)

    def serve_http(self, host: str, port: int) -> tuple[Any, threading.Thread]:
        """Start the /metrics endpoint on its own thread; (server, thread)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server, thread


class MeteredStore:
    """An online store whose reads and writes are timed and counted (the backend's own
    code knows nothing of metrics). Everything else passes through."""

    def __init__(self, store: OnlineStore, metrics: Metrics) -> None:
        self.store = store
        backend = type(store).__name__.removesuffix("OnlineStore").lower() or "store"
        self._read = metrics.store_seconds.labels(backend, "read")
        self._write = metrics.store_seconds.labels(backend, "write")
        self._read_errors = metrics.store_errors.labels(backend, "read")
        self._write_errors = metrics.store_errors.labels(backend, "write")

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        started = time.perf_counter()
        try:
            return await self.store.read(requests)
        except BaseException:
            self._read_errors.inc()
            raise
        finally:
            self._read.observe(time.perf_counter() - started)

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        started = time.perf_counter()
        try:
            return await self.store.write(table, rows)
        except BaseException:
            self._write_errors.inc()
            raise
        finally:
            self._write.observe(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every RPC, by the code it ended with. First in the chain: it sees
    the status the error interceptor set."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        self._handlers[method] = wrapped = _metered(self.metrics, method, handler)
        return wrapped


class _Call:
    """The metric children of one method, looked up once."""

    def __init__(self, metrics: Metrics, method: str, kind: str) -> None:
        service, _, name = method.strip("/").partition("/")
        labels = (kind, service, name)
        self.started = metrics.started.labels(*labels)
        self.handling = metrics.handling.labels(*labels)
        self.handled = {
            code: metrics.handled.labels(*labels, code.name) for code in grpc.StatusCode
        }

    def done(self, started: float, code: grpc.StatusCode) -> None:
        self.handling.observe(time.perf_counter() - started)
        self.handled[code].inc()


def _code_of(context: grpc.aio.ServicerContext, failure: BaseException | None) -> grpc.StatusCode:
    """The code an RPC ended with: the one an abort set, else OK, CANCELLED or UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if failure is None:
        return grpc.StatusCode.OK
    if isinstance(failure, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _metered(
    metrics: Metrics, method: str, handler: grpc.RpcMethodHandler
) -> grpc.RpcMethodHandler:
    if handler.unary_unary is not None:
        behaviour = handler.unary_unary
        call = _Call(metrics, method, "unary")

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call.started.inc()
            started = time.perf_counter()
            failure: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as err:
                failure = err
                raise
            finally:
                call.done(started, _code_of(context, failure))

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    stream_behaviour = handler.unary_stream or handler.stream_stream
    if stream_behaviour is None:
        return handler
    kind = "server_stream" if handler.unary_stream is not None else "bidi_stream"
    stream_call = _Call(metrics, method, kind)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        stream_call.started.inc()
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            async for message in stream_behaviour(request, context):
                yield message
        except BaseException as err:
            failure = err
            raise
        finally:
            stream_call.done(started, _code_of(context, failure))

    make = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream is not None
        else grpc.stream_stream_rpc_method_handler
    )
    return make(
        stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
