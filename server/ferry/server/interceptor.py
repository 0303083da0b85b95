"""The one place exceptions become gRPC statuses: an interceptor that guards every method.

Every failure reaches the client as a ``google.rpc.Status`` with one ``ErrorInfo``
(``domain="ferry"``, an UPPER_SNAKE ``reason`` and ``metadata`` holding each value the
message quotes); the code comes from ``ferry.server.errors.STATUS_CODES``. Anything that is
not a Ferry error is INTERNAL with an incident id, its traceback in the log only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ferry.core.errors import FerryError, StoreUnavailableError
from ferry.server.errors import InvalidRequestError, status_code_of
from ferry.server.logs import FailureLog, log_call
from ferry.server.method_handlers import PerMethodInterceptor, rebuilt
from ferry.server.observe import MethodObserver, Observer

log = logging.getLogger("ferry.server")
DOMAIN = "ferry"


def to_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str]
) -> grpc.Status:
    """A rich status: google.rpc.Status with one ErrorInfo."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))
    proto = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[info])
    return rpc_status.to_status(proto)


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamHandler = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


class _Undecodable:
    """Stands in for a request whose bytes are not its message: the handler's guard turns
    it into INVALID_ARGUMENT (gRPC itself would answer UNKNOWN with the exception's class)."""

    def __init__(self, message_type: str, error: Exception) -> None:
        self.message_type = message_type
        self.error = error

    def raise_error(self) -> None:
        _warn_undecodable(self.message_type, self.error)
        raise InvalidRequestError(
            f"the request is not a valid {self.message_type}: it does not decode",
            reason="UNDECODABLE_REQUEST",
            message_type=self.message_type,
        )


_UNDECODABLE_LOG_EVERY_S = 60.0
_last_undecodable_log: dict[str, float] = {}


def _warn_undecodable(message_type: str, error: Exception) -> None:
    """One warning per message type a minute at most: garbage traffic must not flood the log."""
    now = time.monotonic()
    if now - _last_undecodable_log.get(message_type, -_UNDECODABLE_LOG_EVERY_S) >= (
        _UNDECODABLE_LOG_EVERY_S
    ):
        _last_undecodable_log[message_type] = now
        log.warning(
            "undecodable %s received (%s); answered INVALID_ARGUMENT; more are not logged for %g s",
            message_type,
            error,
            _UNDECODABLE_LOG_EVERY_S,
        )


def lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A request deserializer that never raises (see ``_Undecodable``)."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    name = getattr(owner, "__name__", "request message")

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as err:
            return _Undecodable(name, err)

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            request.raise_error()
        yield request


_EVERY_FAILURE = FailureLog(0)


def guard(
    method: str,
    behaviour: Handler,
    on_store_down: Callable[[], None],
    watch: MethodObserver | None = None,
    failures: FailureLog = _EVERY_FAILURE,
) -> Handler:
    """Wrap a unary handler so every exception leaves as a status, never a traceback; and
    tell ``watch`` (metrics, sampled access log) how each call ended, and ``failures`` (the
    access log) each call that failed."""

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        observed = watch.start(context) if watch is not None else None
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, _Undecodable):
                request.raise_error()
            return await behaviour(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError) as err:
            code = _code_after(context, err)
            raise
        except Exception as err:
            code = _code_of(err)
            await _abort(method, err, code, context, on_store_down, request, started, failures)
        finally:
            if watch is not None:
                watch.done(observed, code, time.perf_counter() - started, context, request)

    return guarded


def guard_stream(
    method: str,
    behaviour: StreamHandler,
    on_store_down: Callable[[], None],
    watch: MethodObserver | None = None,
    failures: FailureLog = _EVERY_FAILURE,
) -> StreamHandler:
    """``guard`` for streaming handlers (the first argument is the request, or the stream
    of requests)."""

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        observed = watch.start(context) if watch is not None else None
        single = None if hasattr(request, "__aiter__") else request
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, _Undecodable):
                request.raise_error()
            if hasattr(request, "__aiter__"):  # a stream of requests: check each one
                request = _checked(request)
            async for message in behaviour(request, context):
                yield message
        except (asyncio.CancelledError, grpc.aio.AbortError) as err:
            code = _code_after(context, err)
            raise
        except Exception as err:
            code = _code_of(err)
            await _abort(method, err, code, context, on_store_down, single, started, failures)
        finally:
            if watch is not None:
                watch.done(observed, code, time.perf_counter() - started, context, single)

    return guarded


def _code_of(err: Exception) -> grpc.StatusCode:
    return status_code_of(err) if isinstance(err, FerryError) else grpc.StatusCode.INTERNAL


def _code_after(context: grpc.aio.ServicerContext, err: BaseException) -> grpc.StatusCode:
    """The code of a call that was aborted elsewhere, or cancelled."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return (
        grpc.StatusCode.CANCELLED
        if isinstance(err, asyncio.CancelledError)
        else grpc.StatusCode.UNKNOWN
    )


async def _abort(
    method: str,
    err: Exception,
    code: grpc.StatusCode,
    context: grpc.aio.ServicerContext,
    on_store_down: Callable[[], None],
    request: Any,
    started: float,
    failures: FailureLog,
) -> None:
    """End the call with the status ``code`` of ``err``, and write its access log line."""
    seconds = time.perf_counter() - started
    if not isinstance(err, FerryError) or code is grpc.StatusCode.INTERNAL:
        log.exception("%s failed", method)
        incident = uuid.uuid4().hex[:12]
        if failures.admits(method, code):  # always, for INTERNAL: see FailureLog
            log_call(method, code, context, request, seconds, "internal error", incident)
        await _abort_internal(context, incident)
        return
    if isinstance(err, StoreUnavailableError):
        on_store_down()
    if failures.admits(method, code):
        log_call(method, code, context, request, seconds, str(err))
    await context.abort_with_status(to_status(code, str(err), err.reason, err.metadata))


async def _abort_internal(context: grpc.aio.ServicerContext, incident: str) -> None:
    log.error("incident %s: see the traceback above", incident)
    await context.abort_with_status(
        to_status(
            grpc.StatusCode.INTERNAL,
            f"internal error (incident {incident}); the server log has the details",
            "INTERNAL",
            {"incident": incident},
        )
    )


class ErrorInterceptor(PerMethodInterceptor):
    """Applies ``guard`` (``guard_stream``) to every unary (streaming) method of the server,
    once per method."""

    def __init__(
        self,
        on_store_down: Callable[[], None],
        observer: Observer | None = None,
        failures: FailureLog = _EVERY_FAILURE,
    ) -> None:
        super().__init__()
        self._on_store_down = on_store_down
        self._observer = observer
        self._failures = failures

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        def guarded(behaviour: Any, kind: str) -> Any:
            watch = self._observer.method(method, kind) if self._observer is not None else None
            protect = guard if kind == "unary" else guard_stream
            return protect(method, behaviour, self._on_store_down, watch, self._failures)

        return rebuilt(handler, guarded, lenient(handler.request_deserializer))
