"""What a server process exports to Prometheus (``ferry serve --metrics-port P``).

- gRPC, with the grpc-ecosystem names: ``grpc_server_started_total``,
  ``grpc_server_handled_total`` (by ``grpc_code``), ``grpc_server_handling_seconds``.
- What was served: ``ferry_served_values_total`` by feature view and status,
  ``ferry_served_entity_rows_total`` by view, and **freshness**,
  ``ferry_served_value_age_seconds``: per view, the age (now - event time) of every row whose
  values were served PRESENT, at the moment they were served: how stale the features were
  when a model used them, not when materialization last ran.
- The store: ``ferry_store_call_seconds`` and ``ferry_store_errors_total`` by backend and
  operation; on DynamoDB also ``ferry_store_requests_total`` by request (each is billed).
- The near cache, with one: ``ferry_near_cache_lookups_total`` by result (hit, miss),
  ``ferry_near_cache_{invalidations,flushes,evictions}_total``,
  ``ferry_near_cache_entries`` and ``ferry_near_cache_bytes``.
- The registry: ``ferry_registry_last_success_timestamp_seconds``,
  ``ferry_registry_stale_models``, ``ferry_registry_cache_age_seconds``.
- The process: CPU, memory, file descriptors (prometheus_client's process collector).

Each process has its own registry and endpoint; with ``--workers N`` worker I listens on
P + I (one port per worker, scraped as N targets: no shared files, no lock between
processes). The endpoint is served on the event loop, the text rendered on an executor
thread, so a scrape does not hold up gRPC (``Metrics.serve_http``).

Cost: prometheus_client's own Counter and Histogram take a lock per update, about 1 µs
each, and a call makes some 15 updates: 16% more server CPU per call at batch 1 in
``loadtest/metrics_overhead.py``. Only the event loop writes these metrics, so they are
plain dicts and lists here (``_Counters``, ``_Histograms``), read by the scrape thread as a
snapshot: an update costs a dict lookup.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ferry.server.registry import ModelRegistry
from ferry.stores.base import OnlineStore, ReadRequest, ViewTable, WriteResult, backend_name
from ferry.stores.near_cache import NearCache

LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
AGE_BUCKETS = (
    1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
    7 * 86400, 30 * 86400,
)  # fmt: skip
STATUS_NAMES = {1: "PRESENT", 2: "NULL_VALUE", 3: "NOT_FOUND", 4: "OUTSIDE_MAX_AGE"}

Labels = tuple[str, ...]


class _Counters:
    """Counters by label values; written by the event loop only, read at scrape time."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.values: dict[Labels, float] = {}

    def add(self, key: Labels, amount: float = 1) -> None:
        self.values[key] = self.values.get(key, 0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(list(key), value)
        return family


class _Histograms:
    """Histograms by label values (bucket counts, not cumulative, and a sum); written by
    the event loop only, read at scrape time. Many observations at once cost one
    ``numpy.searchsorted``."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.bounds = [float(b) for b in buckets]
        self._bounds_array = np.asarray(self.bounds)
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = {}

    def _counts(self, key: Labels) -> list[int]:
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * (len(self.bounds) + 1)
            self.sums[key] = 0.0
        return counts

    def observe(self, key: Labels, value: float) -> None:
        self._counts(key)[bisect.bisect_left(self.bounds, value)] += 1
        self.sums[key] += value

    def observe_all(self, key: Labels, values: Any) -> None:
        """Observe each of ``values``: a numpy array, or a short list."""
        if not len(values):
            return
        counts = self._counts(key)
        if isinstance(values, np.ndarray):
            slots = np.searchsorted(self._bounds_array, values, side="left")
            for slot, count in enumerate(np.bincount(slots, minlength=len(counts)).tolist()):
                counts[slot] += count
            self.sums[key] += float(values.sum())
        else:
            for value in values:
                counts[bisect.bisect_left(self.bounds, value)] += 1
            self.sums[key] += sum(values)

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        bounds = [f"{b:g}" for b in self.bounds]
        for key, counts in list(self.counts.items()):
            cumulative = np.cumsum(counts).tolist()
            buckets = [*zip(bounds, cumulative[:-1], strict=True), ("+Inf", cumulative[-1])]
            family.add_metric(list(key), buckets, self.sums.get(key, 0.0))
        return family


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


class NearCacheCollector(Collector):
    """The near cache's counts and size (``ferry serve --cache-entries``), read at scrape
    time: the cache keeps plain integers, the hot path pays nothing more."""

    def __init__(self, cache: NearCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        counts = self.cache.counts
        lookups = CounterMetricFamily(
            "ferry_near_cache_lookups",
            "Keys looked up in the near cache, by result.",
            labels=["result"],
        )
        lookups.add_metric(["hit"], counts.hits)
        lookups.add_metric(["miss"], counts.misses)
        yield lookups
        for name, documentation, value in (
            (
                "invalidations",
                "Keys invalidated by the store or by writes here.",
                counts.invalidations,
            ),
            ("flushes", "Times everything was dropped (tracking connection lost).", counts.flushes),
            ("evictions", "Entries dropped to stay within the bounds.", counts.evictions),
        ):
            yield CounterMetricFamily(f"ferry_near_cache_{name}", documentation, value=value)
        yield GaugeMetricFamily("ferry_near_cache_entries", "Entries held.", value=len(self.cache))
        yield GaugeMetricFamily(
            "ferry_near_cache_bytes", "Bytes held (keys, rows, overhead).", value=self.cache.bytes
        )


class StoreRequestsCollector(Collector):
    """The requests a store sent to its backend, by request (DynamoDB: ``batch_get_item``,
    ``put_item``, ...; retries included), read at scrape time from the store's own counts:
    on DynamoDB each one is billed, and natural batching shows as fewer per call."""

    def __init__(self, backend: str, requests: Counter[str]) -> None:
        self.backend = backend
        self.requests = requests

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "ferry_store_requests",
            "Requests sent to the online store's backend, by request.",
            labels=["backend", "request"],
        )
        for request, count in sorted(self.requests.items()):
            family.add_metric([self.backend, request], count)
        yield family


class Metrics(Collector):
    """Every metric of one server process, in its own registry."""

    def __init__(self) -> None:
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = _Counters(
            "grpc_server_started_total", "RPCs started on the server.", grpc_labels
        )
        self.handled = _Counters(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            [*grpc_labels, "grpc_code"],
        )
        self.handling = _Histograms(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end, in seconds.",
            grpc_labels,
            LATENCY_BUCKETS,
        )
        self.values = _Counters(
            "ferry_served_values_total",
            "Feature values served, by feature view and status.",
            ["feature_view", "status"],
        )
        self.rows = _Counters(
            "ferry_served_entity_rows_total",
            "Entity rows looked up, by feature view.",
            ["feature_view"],
        )
        self.value_age = _Histograms(
            "ferry_served_value_age_seconds",
            "Age (now - event time) of the rows whose values were served PRESENT, per view.",
            ["feature_view"],
            AGE_BUCKETS,
        )
        self.store_seconds = _Histograms(
            "ferry_store_call_seconds",
            "Online store calls, by backend and operation, in seconds.",
            ["backend", "operation"],
            LATENCY_BUCKETS,
        )
        self.store_errors = _Counters(
            "ferry_store_errors_total",
            "Online store calls that failed, by backend and operation.",
            ["backend", "operation"],
        )
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(self)
        self._status_keys: dict[tuple[str, int], Labels] = {}

    def collect(self) -> Iterator[Metric]:
        for metric in (
            self.started,
            self.handled,
            self.handling,
            self.values,
            self.rows,
            self.value_age,
            self.store_seconds,
            self.store_errors,
        ):
            yield metric.family()

    def watch_registry(self, registry: ModelRegistry) -> None:
        self.registry.register(RegistryCollector(registry))

    def watch_cache(self, cache: NearCache) -> None:
        self.registry.register(NearCacheCollector(cache))

    def watch_store(self, store: OnlineStore) -> None:
        """Export the backend requests of a store that counts them (``calls``)."""
        requests = getattr(store, "calls", None)
        if isinstance(requests, Counter):
            self.registry.register(StoreRequestsCollector(backend_name(store), requests))

    def served(self, view: str, rows: int, statuses: dict[int, int], ages_s: Any) -> None:
        """One view's part of an answer: values by status, and the ages of PRESENT rows
        (a numpy array, or a short list)."""
        self.rows.add((view,), rows)
        for status, count in statuses.items():
            if count:
                key = self._status_keys.get((view, status))
                if key is None:
                    key = self._status_keys[view, status] = (view, STATUS_NAMES[status])
                self.values.add(key, count)
        self.value_age.observe_all((view,), ages_s)

    async def serve_http(self, host: str, port: int) -> asyncio.Server:
        """Start the /metrics endpoint (any path answers) on the event loop.

        The loop only accepts and writes; the text is rendered on an executor thread, so a
        scrape does not hold up gRPC. (prometheus_client's own server is a thread that
        wakes twice a second for ever: in ``loadtest/metrics_overhead.py`` that alone cost
        about 7% server CPU per call.)
        """
        return await asyncio.start_server(self._answer, host, port)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if not request.startswith((b"GET ", b"HEAD ")):
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            else:
                loop = asyncio.get_running_loop()
                body = await loop.run_in_executor(None, generate_latest, self.registry)
                head = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode() + (b"" if request.startswith(b"HEAD ") else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent garbage: nothing to answer
        finally:
            writer.close()


class MeteredStore:
    """An online store whose reads and writes are timed and counted (the backend's own
    code knows nothing of metrics). Everything else passes through."""

    def __init__(self, store: OnlineStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self.backend = backend_name(store)
        self._read, self._write = (self.backend, "read"), (self.backend, "write")

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        started = time.perf_counter()
        try:
            return await self.store.read(requests)
        except BaseException:
            self.metrics.store_errors.add(self._read)
            raise
        finally:
            self.metrics.store_seconds.observe(self._read, time.perf_counter() - started)

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        started = time.perf_counter()
        try:
            return await self.store.write(table, rows)
        except BaseException:
            self.metrics.store_errors.add(self._write)
            raise
        finally:
            self.metrics.store_seconds.observe(self._write, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class MethodMetrics:
    """The metrics of one RPC method, label values built once."""

    def __init__(self, metrics: Metrics, method: str, kind: str) -> None:
        service, _, name = method.strip("/").partition("/")
        self.metrics = metrics
        self.labels: Labels = (kind, service, name)
        self.by_code = {code: (*self.labels, code.name) for code in grpc.StatusCode}

    def start(self) -> None:
        self.metrics.started.add(self.labels)

    def done(self, seconds: float, code: grpc.StatusCode) -> None:
        self.metrics.handling.observe(self.labels, seconds)
        self.metrics.handled.add(self.by_code[code])
