"""The interceptor that authenticates every call of a server with an access file: it finds
the caller (bearer token, else client certificate) and sets it for the call, before the
method runs. Health and reflection stay open: probes and tools carry no token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from ferry.server.access import Access, set_caller
from ferry.server.method_handlers import PerMethodInterceptor, rebuilt

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


class AuthInterceptor(PerMethodInterceptor):
    """Authenticates each call to every method but health and reflection. Placed after
    ``ErrorInterceptor``, so a refusal leaves as UNAUTHENTICATED with Ferry's reason."""

    def __init__(self, access: Access) -> None:
        super().__init__()
        self.access = access

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if method.startswith(OPEN_SERVICES):
            return handler
        return rebuilt(
            handler,
            lambda behaviour, kind: (_unary if kind == "unary" else _stream)(
                self.access, behaviour
            ),
        )
