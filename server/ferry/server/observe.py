"""One interceptor observes every RPC: it times it, counts it by the code it ended with
(``ferry.server.metrics``, with ``--metrics-port``) and writes the access log line
(``ferry.server.logs``). One layer for both: grpc.aio runs each interceptor per call, and a
layer costs more than the counting (measured with ``loadtest/metrics_overhead.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from ferry.server.logs import log_call
from ferry.server.metrics import MethodMetrics, Metrics

UNLOGGED = "/grpc.health.v1.Health/"  # probes every few seconds would drown the access log


def code_of(context: grpc.aio.ServicerContext, failure: BaseException | None) -> grpc.StatusCode:
    """The code an RPC ended with: the one an abort set, else OK, CANCELLED or UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if failure is None:
        return grpc.StatusCode.OK
    if isinstance(failure, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class ObserveInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """First in the chain, so it sees the status the error interceptor set."""

    def __init__(self, metrics: Metrics | None, access_log_sample: float) -> None:
        self.metrics = metrics
        self.sample = access_log_sample
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
        self._handlers[method] = wrapped = self._observed(method, handler)
        return wrapped

    def _observed(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        kind = (
            "unary"
            if handler.unary_unary is not None
            else "server_stream"
            if handler.unary_stream is not None
            else "bidi_stream"
        )
        counted = MethodMetrics(self.metrics, method, kind) if self.metrics else None
        sample = -1.0 if method.startswith(UNLOGGED) else self.sample

        def finish(
            started: float,
            context: grpc.aio.ServicerContext,
            request: Any,
            failure: BaseException | None,
        ) -> None:
            code = code_of(context, failure)
            seconds = time.perf_counter() - started
            if counted is not None:
                counted.done(seconds, code)
            if sample >= 0:
                log_call(method, code, context, request, seconds, sample)

        if handler.unary_unary is not None:
            behaviour = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if counted is not None:
                    counted.start()
                started = time.perf_counter()
                failure: BaseException | None = None
                try:
                    return await behaviour(request, context)
                except BaseException as err:
                    failure = err
                    raise
                finally:
                    finish(started, context, request, failure)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        streaming = handler.unary_stream or handler.stream_stream
        if streaming is None:
            return handler

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if counted is not None:
                counted.start()
            started = time.perf_counter()
            failure: BaseException | None = None
            try:
                async for message in streaming(request, context):
                    yield message
            except BaseException as err:
                failure = err
                raise
            finally:
                finish(started, context, None, failure)

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
