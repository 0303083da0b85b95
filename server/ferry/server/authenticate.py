"""The interceptor that authenticates every call of a server with an access file: it finds
the caller (bearer token, else client certificate) and sets it for the call, before the
method runs. Health and reflection stay open: probes and tools carry no token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from ferry.server.access import Access, set_caller

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamHandler = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def identities_of(context: grpc.aio.ServicerContext) -> list[str]:
    """The names of a verified client certificate: ``CN=...`` and ``SAN:...`` each."""
    auth = context.auth_context()
    names = [f"CN={v.decode()}" for v in auth.get("x509_common_name", [])]
    names += [f"SAN:{v.decode()}" for v in auth.get("x509_subject_alternative_name", [])]
    return names


def _authenticate(access: Access, context: grpc.aio.ServicerContext) -> None:
    metadata = dict(context.invocation_metadata() or ())
    authorization = metadata.get("authorization")
    set_caller(access.authenticate(authorization, identities_of(context)))


def _unary(access: Access, behaviour: Handler) -> Handler:
    async def authenticated(request: Any, context: grpc.aio.ServicerContext) -> Any:
        _authenticate(access, context)
        return await behaviour(request, context)

    return authenticated


def _stream(access: Access, behaviour: StreamHandler) -> StreamHandler:
    async def authenticated(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        _authenticate(access, context)
        async for message in behaviour(request, context):
            yield message

    return authenticated


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates each call to every method but health and reflection. Placed after
    ``ErrorInterceptor``, so a refusal leaves as UNAUTHENTICATED with Ferry's reason."""

    def __init__(self, access: Access) -> None:
        self.access = access
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
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        self._handlers[method] = wrapped = _wrapped(self.access, handler)
        return wrapped


def _wrapped(access: Access, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour authenticated first."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(access, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _stream(access, handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _stream(access, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
