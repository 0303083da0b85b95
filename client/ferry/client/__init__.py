"""The Ferry Python client: ``FerryClient`` (blocking) and ``AsyncFerryClient`` (asyncio)."""

from ferry.client._calls import PushResult
from ferry.client._clients import AsyncFerryClient, FerryClient
from ferry.client._connection import ClientTls
from ferry.client._errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RpcError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from ferry.client._results import FeatureValues, OnlineFeatures
from ferry.client._retry import RetryPolicy
from ferry.client._streams import Lookup, StreamResult
from ferry.client.registry import ModelVersion, bind_feature_service
from ferry.core.model_binding import FEATURE_SERVICE_TAG

__all__ = [
    "FEATURE_SERVICE_TAG",
    "AsyncFerryClient",
    "ClientTls",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FeatureValues",
    "FerryClient",
    "InternalError",
    "InvalidArgumentError",
    "Lookup",
    "ModelVersion",
    "NotFoundError",
    "OnlineFeatures",
    "PermissionDeniedError",
    "PushResult",
    "ResourceExhaustedError",
    "RetryPolicy",
    "RpcError",
    "StreamResult",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "bind_feature_service",
]
