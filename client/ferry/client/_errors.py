"""Errors the client raises: one class per gRPC status code the server uses.

FerryError
└── RpcError                   any failed call: code, reason, metadata
    ├── InvalidArgumentError   INVALID_ARGUMENT: fix the request
    ├── NotFoundError          NOT_FOUND: unknown feature service, view or model
    ├── FailedPreconditionError FAILED_PRECONDITION
    ├── ResourceExhaustedError RESOURCE_EXHAUSTED: a limit, e.g. message size
    ├── UnavailableError       UNAVAILABLE: server or store down; retried on reads
    ├── DeadlineExceededError  DEADLINE_EXCEEDED: the per-call timeout passed
    ├── UnimplementedError     UNIMPLEMENTED
    └── InternalError          INTERNAL and anything else
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from ferry.core.errors import FerryError

_DETAILS_KEY = "grpc-status-details-bin"


class RpcError(FerryError):
    """A call failed. ``code`` is the gRPC status code, ``reason`` and ``metadata`` come
    from the server's ErrorInfo (reason is the code's name when the server sent none)."""

    def __init__(
        self, code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str]
    ) -> None:
        super().__init__(message, reason=reason, **metadata)
        self.code = code


class InvalidArgumentError(RpcError):
    """The request is malformed or names unknown features."""


class NotFoundError(RpcError):
    """A feature service, view or model that the server does not know."""


class FailedPreconditionError(RpcError):
    """The system is not in a state to answer (e.g. a model version without features)."""


class ResourceExhaustedError(RpcError):
    """A limit was hit, e.g. the message size."""


class UnavailableError(RpcError):
    """The server or its store cannot answer now; reads are retried on this code only."""


class DeadlineExceededError(RpcError):
    """The per-call timeout passed."""


class UnimplementedError(RpcError):
    """The server does not serve this RPC."""


class UnauthenticatedError(RpcError):
    """The server checks callers and this one has no token (or client certificate) it
    knows."""


class PermissionDeniedError(RpcError):
    """The caller is known but not granted what the call needs (the message names it)."""


class InternalError(RpcError):
    """The server failed; its log has the details."""


_BY_CODE: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def from_rpc_error(err: grpc.RpcError) -> RpcError:
    """The typed error of a failed call (sync or asyncio), with its ErrorInfo if any."""
    code: grpc.StatusCode = err.code()
    message: str = err.details() or code.name
    reason, metadata = code.name, {}
    for key, value in err.trailing_metadata() or ():
        if key == _DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, metadata = info.reason, dict(info.metadata)
    return error_of(code, message, reason, metadata)


def error_of(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str]
) -> RpcError:
    """The typed error of a status code."""
    return _BY_CODE.get(code, InternalError)(code, message, reason, metadata)
