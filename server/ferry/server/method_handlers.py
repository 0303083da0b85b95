"""What the server's interceptors share: a handler rebuilt around new behaviour, and an
interceptor that wraps each method's handler once, on its first call, then reuses it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

Wrap = Callable[[Any, str], Any]
"""(the method's behaviour, its kind: unary, server_stream or bidi_stream) -> the new one."""


def rebuilt(
    handler: grpc.RpcMethodHandler,
    wrap: Wrap,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour replaced by ``wrap``'s, and its request deserializer
    by ``request_deserializer`` if given."""
    deserializer = request_deserializer or handler.request_deserializer
    for behaviour, kind, make in (
        (handler.unary_unary, "unary", grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, "server_stream", grpc.unary_stream_rpc_method_handler),
        (handler.stream_stream, "bidi_stream", grpc.stream_stream_rpc_method_handler),
    ):
        if behaviour is not None:
            return make(
                wrap(behaviour, kind),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler  # stream-unary: no method of Ferry's has that shape


class PerMethodInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps each method's handler once (``wrap``), on its first call, and reuses it."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError

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
        self._handlers[method] = wrapped = self.wrap(method, handler)
        return wrapped
