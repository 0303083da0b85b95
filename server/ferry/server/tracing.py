"""OpenTelemetry tracing of a server (``ferry serve --tracing``; the ``[tracing]`` extra).

Spans: one per RPC (``SERVER`` kind, ``rpc.*`` attributes, the gRPC code, the caller's
``traceparent`` continued), one per online store call inside it (``store.read``,
``store.write``), and one per model registry resolution (``registry.resolve``). Spans go to
an OTLP exporter configured by the standard ``OTEL_*`` variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ...), batched off the event loop.
Without ``--tracing`` none of this is imported or run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from ferry.core.errors import FerryError
from ferry.stores.base import OnlineStore, ReadRequest, ViewTable, WriteResult, backend_name


class Tracing:
    """A tracer of its own (no global provider is touched), exporting to ``exporter`` or,
    by default, to OTLP as the ``OTEL_*`` variables say.

    Raises:
        FerryError: the ``[tracing]`` extra is not installed.
    """

    def __init__(self, exporter: Any = None) -> None:
        try:
            # Optional dependency (the tracing extra): imported only when tracing is on.
            from opentelemetry import context, propagate, trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        except ImportError as err:
            raise FerryError(
                "tracing needs OpenTelemetry: pip install 'ferry-features[tracing]'"
            ) from err
        name = os.environ.get("OTEL_SERVICE_NAME", "ferry")
        self.provider = TracerProvider(resource=Resource.create({"service.name": name}))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("ferry.server")
        self._trace = trace
        self._propagate = propagate
        self._context = context

    def rpc(self, method: str, metadata: Sequence[tuple[str, Any]] | None) -> Any:
        """Start the span of an RPC, continuing the caller's trace; ``finish`` ends it."""
        service, _, name = method.strip("/").partition("/")
        carrier = {key: value for key, value in (metadata or ()) if isinstance(value, str)}
        parent = self._propagate.extract(carrier)
        span = self.tracer.start_span(
            method.strip("/"),
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        return span, token

    def finish(self, started: Any, code: grpc.StatusCode) -> None:
        span, token = started
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, code.name))
        span.end()
        self._context.detach(token)

    def span(self, name: str, attributes: Mapping[str, Any]) -> Any:
        """A child span of the current one, as a context manager."""
        return self.tracer.start_as_current_span(name, attributes=dict(attributes))

    def shutdown(self) -> None:
        self.provider.shutdown()


class TracedStore:
    """An online store whose reads and writes are spans of the current RPC."""

    def __init__(self, store: OnlineStore, tracing: Tracing) -> None:
        self.store = store
        self.tracing = tracing
        self.backend = backend_name(store)

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        keys = sum(len(r.keys) for r in requests)
        with self.tracing.span("store.read", {"db.system": self.backend, "ferry.keys": keys}):
            return await self.store.read(requests)

    async def write(self, table: ViewTable, rows: Sequence[tuple[bytes, bytes]]) -> WriteResult:
        attributes = {"db.system": self.backend, "ferry.rows": len(rows)}
        with self.tracing.span("store.write", attributes):
            return await self.store.write(table, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)
