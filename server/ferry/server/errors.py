"""The errors the server raises, beside core's, and the gRPC code each one maps to.

This is the server's one error home: the serving flow, the registry flow and the process
raise these (or core's), and ``ferry.server.interceptor`` turns them into statuses with
``STATUS_CODES``, the one table. The whole tree, with its codes:

    FerryError (ferry.core.errors)
    ├── UnknownReferenceError
    │   ├── UnknownFeatureServiceError           NOT_FOUND
    │   ├── UnknownFeatureViewError              NOT_FOUND
    │   └── UnknownFeatureError                  INVALID_ARGUMENT (an argument, not a resource)
    ├── InvalidValueError                        INVALID_ARGUMENT
    ├── StoreError
    │   └── StoreUnavailableError                UNAVAILABLE
    ├── InvalidRequestError       (here)         INVALID_ARGUMENT
    ├── DeadlineError             (here)         DEADLINE_EXCEEDED
    ├── NotImplementedYetError    (here)         UNIMPLEMENTED
    ├── CorruptStoredRowError     (here)         DATA_LOSS
    ├── UnauthenticatedError      (here)         UNAUTHENTICATED
    ├── PermissionDeniedError     (here)         PERMISSION_DENIED
    └── RegistryError             (here)
        ├── UnknownModelError                    NOT_FOUND
        ├── RegistryUnavailableError             UNAVAILABLE
        └── MissingBindingError                  FAILED_PRECONDITION
    anything else                                INTERNAL, generic message; the traceback
                                                 goes to the log only
"""

from __future__ import annotations

import grpc

from ferry.core.errors import (
    FerryError,
    InvalidValueError,
    StoreUnavailableError,
    UnknownFeatureError,
    UnknownFeatureServiceError,
    UnknownFeatureViewError,
)


class InvalidRequestError(FerryError):
    """The request is malformed: a missing field, ragged columns, a wrong key type, ..."""

    reason = "INVALID_REQUEST"


class DeadlineError(FerryError):
    """The client's deadline passed before the store answered."""

    reason = "DEADLINE_EXCEEDED"


class NotImplementedYetError(FerryError):
    """An RPC of the contract that this server does not serve (e.g. no registry)."""

    reason = "NOT_IMPLEMENTED"


class CorruptStoredRowError(FerryError):
    """A row in the online store does not decode: never served as values."""

    reason = "CORRUPT_STORED_ROW"


class UnauthenticatedError(FerryError):
    """A call without a known token or client certificate, to a server that checks them."""

    reason = "UNAUTHENTICATED"


class PermissionDeniedError(FerryError):
    """The caller is known but not granted the permission the call needs."""

    reason = "PERMISSION_DENIED"


class RegistryError(FerryError):
    """The model registry could not answer as asked."""

    reason = "REGISTRY_FAILED"


class UnknownModelError(RegistryError):
    """No such registered model, alias, stage or version."""

    reason = "UNKNOWN_MODEL"


class RegistryUnavailableError(RegistryError):
    """The model registry cannot be reached and nothing is known of the model yet."""

    reason = "REGISTRY_UNAVAILABLE"


class MissingBindingError(RegistryError):
    """A model version without the tag naming its feature service."""

    reason = "MODEL_WITHOUT_FEATURE_SERVICE"


STATUS_CODES: list[tuple[type[FerryError], grpc.StatusCode]] = [
    # Most specific first: the first class an error is an instance of decides its code.
    (UnknownFeatureServiceError, grpc.StatusCode.NOT_FOUND),
    (UnknownFeatureViewError, grpc.StatusCode.NOT_FOUND),
    (UnknownFeatureError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (DeadlineError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NotImplementedYetError, grpc.StatusCode.UNIMPLEMENTED),
    (CorruptStoredRowError, grpc.StatusCode.DATA_LOSS),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownModelError, grpc.StatusCode.NOT_FOUND),
    (RegistryUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (MissingBindingError, grpc.StatusCode.FAILED_PRECONDITION),
]


def status_code_of(error: FerryError) -> grpc.StatusCode:
    """The gRPC code a Ferry error maps to (INTERNAL for any error not in the table)."""
    for kind, code in STATUS_CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL
