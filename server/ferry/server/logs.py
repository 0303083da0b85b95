"""The server's logs: text or JSON lines, and an access log of RPCs.

``--log-format json`` writes one object per line: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``event`` (the message), ``pid``, the record's fields (an access line's method,
code, duration, ...) and ``exception`` with the traceback when there is one.

The access log (logger ``ferry.access``) has one line per RPC that failed and, with
``--access-log-sample R``, a fraction R of the others: ``method``, ``code``,
``duration_ms``, ``peer``, ``request_bytes``, ``reason`` and ``incident`` (the id an
INTERNAL answer names, to find its traceback). Tokens and request contents never appear.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio

access_log = logging.getLogger("ferry.access")
_INCIDENT = re.compile(r"incident ([0-9a-f]{12})")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "pid": record.process,
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str) -> None:
    """Route the process's logs to stderr as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


class AccessLogInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Logs failed RPCs, and a sample of the others. First in the chain: it sees the code
    the error interceptor set."""

    def __init__(self, sample: float) -> None:
        self.sample = sample
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
        if handler is None or method.startswith("/grpc.health.v1.Health/"):
            return handler  # probes every few seconds would drown the log
        self._handlers[method] = wrapped = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        sample = self.sample
        if handler.unary_unary is not None:
            behaviour = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    return await behaviour(request, context)
                finally:
                    _log_call(method, context, request, started, sample)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        streaming = handler.unary_stream or handler.stream_stream
        if streaming is None:
            return handler

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for message in streaming(request, context):
                    yield message
            finally:
                _log_call(method, context, None, started, sample)

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


def _log_call(
    method: str,
    context: grpc.aio.ServicerContext,
    request: Any,
    started: float,
    sample: float,
) -> None:
    code = context.code()
    failed = isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK
    if not failed and (sample <= 0 or random.random() >= sample):
        return
    details = context.details() or ""
    fields: dict[str, Any] = {
        "method": method,
        "code": code.name if isinstance(code, grpc.StatusCode) else "OK",
        "duration_ms": round((time.perf_counter() - started) * 1e3, 3),
        "peer": context.peer(),
    }
    if request is not None and hasattr(request, "ByteSize"):
        fields["request_bytes"] = request.ByteSize()
    incident = _INCIDENT.search(details) if failed else None
    if incident:
        fields["incident"] = incident.group(1)
    if failed:
        fields["message"] = details
    access_log.log(
        logging.WARNING if failed else logging.INFO,
        "%s %s %.3f ms",
        method,
        fields["code"],
        fields["duration_ms"],
        extra={"fields": fields},
    )
